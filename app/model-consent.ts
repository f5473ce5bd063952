/**
 * A link can name a model (`?model=`), and any page, or a link in a model's reply, can make such a link.
 * A model that is not the user's saved choice is therefore loaded only after they agree: the dialog says
 * where it comes from and how much it would download (worker's describeModel: HEAD requests only, nothing
 * stored), and "Keep my model" loads the saved choice instead.
 */
import type { ModelOrigin } from '../worker/protocol';
import { $ } from './dom';
import { formatBytes } from './format';

function sizeText(o: ModelOrigin): string {
  if (o.problem) return o.problem;
  const size = o.bytes === null ? 'unknown size' : `${formatBytes(o.bytes)} in ${o.files} files`;
  return o.stored ? `${size}, already stored in this browser` : size;
}

/** Shows the dialog for `base`; resolves true when the user chose to load it. */
export function askToLoadModel(base: string, describe: Promise<ModelOrigin>): Promise<boolean> {
  const dialog = $<HTMLDialogElement>('consent-dialog');
  const showWhere = (where: string) => {
    let origin = where;
    try {
      const u = new URL(where);
      origin = u.origin === location.origin ? `${u.host} (this site)` : `${u.host} (another site)`;
    } catch {
      /* a repo id: the worker tells its URL */
    }
    $('consent-origin').textContent = origin;
    $('consent-base').textContent = where;
  };
  showWhere(base);
  const size = $('consent-size');
  size.textContent = 'Checking…';
  describe.then(
    (o) => {
      showWhere(o.base);
      size.textContent = sizeText(o);
    },
    (e: unknown) => (size.textContent = `Its size could not be checked: ${(e as Error)?.message ?? e}`),
  );
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'load'), { once: true }));
}
