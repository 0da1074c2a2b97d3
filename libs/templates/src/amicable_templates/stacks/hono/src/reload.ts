import type { Hono } from 'hono'

// Amicable's live reload for an API preview: `tsx watch` restarts the server on every saved
// change, the page polls the boot id and reloads when it changed. Keep this file.
export const bootId = `${process.pid}-${Date.now()}`

const script = `(function () {
  var me = document.currentScript, boot = me && me.dataset.boot;
  if (!boot) return;
  setInterval(function () {
    fetch('/__amicable/boot', { cache: 'no-store' })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (id) { if (id && id !== boot) location.reload(); })
      .catch(function () {});
  }, 1000);
})();`

export function mountReload(app: Hono) {
  app.get('/__amicable/boot', (c) => c.text(bootId))
  app.get('/__amicable/reload.js', (c) => c.body(script, 200, { 'content-type': 'text/javascript' }))
}
