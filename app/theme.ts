/** The theme button in the sidebar: system, dark, light in turn, saved with the settings (colours: app/tokens.css). */
import { $ } from './dom';
import { settings } from './state';
import { saveSettings } from './store';

export function applyTheme(): void {
  const t = settings.theme;
  if (t === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
  const label = t === 'system' ? 'System' : t === 'dark' ? 'Dark' : 'Light';
  $('theme-label').textContent = label;
  $('theme-toggle').setAttribute('aria-label', `Theme: ${label.toLowerCase()}`);
}

export function initTheme(): void {
  $('theme-toggle').addEventListener('click', () => {
    settings.theme = settings.theme === 'system' ? 'dark' : settings.theme === 'dark' ? 'light' : 'system';
    saveSettings(settings);
    applyTheme();
  });
}
