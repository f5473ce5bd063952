/**
 * <webdms-chat> on a host page whose styles reach for everything (e2e/widget-hostile.html): inherited
 * letter-spacing, text-transform, white-space, direction and font, generic custom properties (--bg, --fg,
 * --accent) and `webdms-chat { all: unset }`. The widget keeps its own look and its fixed corner; the
 * documented --webdms-* variables move it.
 */
import { test, expect } from '@playwright/test';

test('the widget is isolated from the host page\'s styles and keeps its position', async ({ page }) => {
  await page.setViewportSize({ width: 1000, height: 700 });
  await page.goto('/e2e/widget-hostile.html');
  const el = page.locator('webdms-chat');
  await expect.poll(() => el.evaluate((e) => !!e.shadowRoot?.querySelector('.launcher'))).toBe(true);
  const host = await el.evaluate((e) => getComputedStyle(e).position);
  expect(host).toBe('fixed');
  const launcher = el.locator('.launcher');
  const box = (await launcher.boundingBox())!;
  expect(Math.round(1000 - (box.x + box.width))).toBe(20);
  expect(Math.round(700 - (box.y + box.height))).toBe(20);

  await launcher.click();
  const panel = page.getByRole('dialog', { name: 'Help' });
  await expect(panel).toBeVisible();
  const styles = await el.evaluate((e) => {
    const q = (s: string) => getComputedStyle(e.shadowRoot!.querySelector(s)!);
    const title = q('.title');
    return {
      letterSpacing: title.letterSpacing,
      textTransform: title.textTransform,
      whiteSpace: title.whiteSpace,
      direction: title.direction,
      fontStyle: title.fontStyle,
      fontSize: q('.wrap').fontSize,
      color: title.color,
      panelBg: q('.panel').backgroundColor,
      launcherBg: q('.launcher').backgroundImage,
    };
  });
  expect(styles).toMatchObject({
    letterSpacing: 'normal', textTransform: 'none', whiteSpace: 'normal', direction: 'ltr', fontStyle: 'normal', fontSize: '14px',
    color: 'rgb(21, 23, 28)', panelBg: 'rgb(255, 255, 255)',
  });
  expect(styles.launcherBg).toContain('rgb(91, 91, 240)');
  // The panel sits inside the viewport, above the launcher.
  const p = (await panel.boundingBox())!;
  expect(p.x).toBeGreaterThanOrEqual(0);
  expect(p.y).toBeGreaterThanOrEqual(0);

  // The documented way to move it.
  await el.evaluate((e) => (e as HTMLElement).style.setProperty('--webdms-right', '200px'));
  const moved = (await launcher.boundingBox())!;
  expect(Math.round(1000 - (moved.x + moved.width))).toBe(200);
});
