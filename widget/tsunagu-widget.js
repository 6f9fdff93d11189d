/*
 * Tsunagu chat widget: embed script.
 *
 *   <script src="https://GATEWAY/widget/tsunagu-widget.js" async></script>
 *
 * Optional attributes on that <script> tag:
 *   data-lang="ja" | "ja-easy" | "en"   launcher language and the chat's first language
 *                                       (default: the page's <html lang>, else Japanese)
 *   data-position="right" | "left"     which bottom corner the launcher sits in (default right)
 *
 * Content-Security-Policy of the embedding site: allow the gateway origin (scheme://host[:port]
 * of the src above) in exactly two directives, nothing else:
 *
 *   script-src https://GATEWAY     (this file)
 *   frame-src  https://GATEWAY     (the chat page, GATEWAY/widget/chat.html, in an iframe)
 *
 * No connect-src, style-src or img-src entries are needed: this script makes no network
 * requests, adds no <style> element and no style="" attribute (it styles through the CSSOM,
 * which CSP does not restrict), stores nothing (no cookies, no storage) and loads nothing until
 * the person taps the launcher. The chat itself talks to the gateway from inside the iframe.
 *
 * The gateway side: list the embedding site's origin in `server.allowed_origins`, or the
 * gateway's `frame-ancestors` will refuse to be framed by it.
 *
 * Messages from the iframe (checked: event.origin must be the gateway origin and event.source
 * the widget's iframe):
 *   {type: "tsunagu:quick-exit", url}  -> window.location.replace(url) on this page (so Back does
 *                                        not return to it)
 *   {type: "tsunagu:close"}            -> closes the panel
 */
(function () {
  'use strict';

  // Included twice: one launcher is enough. (A DOM marker rather than a global variable.)
  var root = document.documentElement;
  if (root.hasAttribute('data-tsunagu-widget')) return;
  root.setAttribute('data-tsunagu-widget', '');

  var FALLBACK_EXIT_URL = 'https://www.google.com/search?q=weather';
  var SMALL_SCREEN = '(max-width: 600px), (max-height: 560px)';
  var Z = '2147483000';

  // The few words this script shows itself, before the chat page (which has full catalogues) loads.
  var STRINGS = {
    ja: { launcher: '相談する', close: '閉じる', title: 'つなぐ チャット相談', frame: 'チャット相談' },
    'ja-easy': { launcher: 'そうだんする', close: 'とじる', title: 'つなぐ チャットで そうだん', frame: 'チャットで そうだん' },
    en: { launcher: 'Talk to someone', close: 'Close', title: 'Tsunagu chat', frame: 'Chat' }
  };

  // ------------------------------------------------------------------------------------------
  // Where is the gateway? From this script's own src.
  // ------------------------------------------------------------------------------------------

  var script = document.currentScript;
  if (!script) {
    var all = document.getElementsByTagName('script');
    for (var i = all.length - 1; i >= 0; i--) {
      if (/tsunagu-widget\.js(\?|#|$)/.test(all[i].src)) { script = all[i]; break; }
    }
  }
  if (!script || !script.src) return;

  var srcUrl = new URL(script.src, document.baseURI);
  var gatewayOrigin = srcUrl.origin;
  var lang = (script.getAttribute('data-lang') || document.documentElement.lang || 'ja').toLowerCase();
  if (lang !== 'ja-easy') lang = lang.indexOf('ja') === 0 ? 'ja' : (lang.indexOf('en') === 0 ? 'en' : 'ja');
  var text = STRINGS[lang] || STRINGS.ja;
  var side = script.getAttribute('data-position') === 'left' ? 'left' : 'right';

  var chatUrl = new URL('chat.html', srcUrl); // GATEWAY/widget/chat.html
  chatUrl.search = '?embedded=1' + (lang !== 'ja' ? '&lang=' + encodeURIComponent(lang) : '');

  var small = window.matchMedia ? window.matchMedia(SMALL_SCREEN) : { matches: false };
  var state = { open: false, panel: null, frame: null, launcher: null };
  var savedOverflow = null;

  function css(el, props) {
    for (var k in props) if (Object.prototype.hasOwnProperty.call(props, k)) el.style[k] = props[k];
    return el;
  }

  var FONT = 'system-ui, -apple-system, "Hiragino Sans", "Hiragino Kaku Gothic ProN", "Noto Sans JP", "Yu Gothic UI", Meiryo, sans-serif';

  // ------------------------------------------------------------------------------------------
  // Launcher
  // ------------------------------------------------------------------------------------------

  function svgIcon(path, size) {
    var NS = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('width', String(size));
    svg.setAttribute('height', String(size));
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    var p = document.createElementNS(NS, 'path');
    p.setAttribute('fill', 'currentColor');
    p.setAttribute('d', path);
    svg.appendChild(p);
    return svg;
  }

  var ICON_CHAT = 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2zm0 2v10h2v2l2.5-2H20V6H4z';
  var ICON_CLOSE = 'M18.3 5.7a1 1 0 0 0-1.4 0L12 10.6 7.1 5.7a1 1 0 1 0-1.4 1.4l4.9 4.9-4.9 4.9a1 1 0 1 0 1.4 1.4l4.9-4.9 4.9 4.9a1 1 0 0 0 1.4-1.4L13.4 12l4.9-4.9a1 1 0 0 0 0-1.4z';

  function makeLauncher() {
    var b = document.createElement('button');
    b.type = 'button';
    b.className = 'tsunagu-launcher';
    b.setAttribute('aria-haspopup', 'dialog');
    b.setAttribute('aria-expanded', 'false');
    b.appendChild(svgIcon(ICON_CHAT, 22));
    var label = document.createElement('span');
    label.textContent = text.launcher;
    b.appendChild(label);
    css(b, {
      position: 'fixed', bottom: '20px', zIndex: Z,
      display: 'inline-flex', alignItems: 'center', gap: '8px',
      minHeight: '56px', padding: '0 22px', margin: '0',
      border: '0', borderRadius: '28px',
      background: '#2d6a66', color: '#ffffff',
      font: '700 16px/1.2 ' + FONT, letterSpacing: 'normal', textTransform: 'none',
      boxShadow: '0 4px 16px rgba(0,0,0,.25)', cursor: 'pointer'
    });
    b.style[side] = '20px';
    b.addEventListener('click', open);
    b.addEventListener('focus', function () { b.style.outline = '3px solid #1a66d1'; b.style.outlineOffset = '3px'; });
    b.addEventListener('blur', function () { b.style.outline = 'none'; });
    return b;
  }

  // ------------------------------------------------------------------------------------------
  // Panel (full screen on small screens, a panel in the corner on large ones)
  // ------------------------------------------------------------------------------------------

  function makePanel() {
    var panel = document.createElement('div');
    panel.className = 'tsunagu-panel';
    panel.setAttribute('role', 'dialog');
    panel.setAttribute('aria-label', text.title);
    css(panel, {
      position: 'fixed', zIndex: Z, display: 'none', flexDirection: 'column',
      background: '#f6f4ef', overflow: 'hidden', boxSizing: 'border-box',
      boxShadow: '0 10px 40px rgba(0,0,0,.3)', font: '16px/1.4 ' + FONT
    });

    var bar = document.createElement('div');
    css(bar, {
      flex: 'none', display: 'flex', alignItems: 'center', justifyContent: 'space-between',
      minHeight: '44px', padding: '0 4px 0 14px', background: '#2d6a66', color: '#ffffff'
    });
    var title = document.createElement('span');
    title.textContent = text.title;
    css(title, { fontWeight: '700', fontSize: '15px', overflow: 'hidden', textOverflow: 'ellipsis', whiteSpace: 'nowrap' });
    var close = document.createElement('button');
    close.type = 'button';
    close.setAttribute('aria-label', text.close);
    close.title = text.close;
    close.appendChild(svgIcon(ICON_CLOSE, 24));
    css(close, {
      display: 'inline-flex', alignItems: 'center', justifyContent: 'center',
      width: '48px', height: '44px', margin: '0', padding: '0', border: '0',
      background: 'transparent', color: '#ffffff', cursor: 'pointer', borderRadius: '8px'
    });
    close.addEventListener('click', closePanel);
    bar.appendChild(title);
    bar.appendChild(close);

    var frame = document.createElement('iframe');
    frame.src = chatUrl.href;
    frame.title = text.frame;
    frame.setAttribute('referrerpolicy', 'no-referrer');
    css(frame, { flex: '1 1 auto', width: '100%', minHeight: '0', border: '0', display: 'block', background: '#f6f4ef' });

    panel.appendChild(bar);
    panel.appendChild(frame);
    state.frame = frame;
    return panel;
  }

  function layout() {
    var p = state.panel;
    if (!p) return;
    if (small.matches) {
      css(p, {
        top: '0', left: '0', right: '0', bottom: '0', width: '100%', height: '100%',
        maxHeight: 'none', borderRadius: '0'
      });
    } else {
      css(p, {
        top: 'auto', bottom: '20px', left: side === 'left' ? '20px' : 'auto', right: side === 'right' ? '20px' : 'auto',
        width: '400px', height: '680px', maxHeight: 'calc(100vh - 40px)', borderRadius: '14px'
      });
    }
    // Full screen on a phone: keep the host page from scrolling underneath.
    if (state.open && small.matches) lockScroll(); else unlockScroll();
  }

  function lockScroll() {
    if (savedOverflow !== null) return;
    savedOverflow = document.documentElement.style.overflow || '';
    document.documentElement.style.overflow = 'hidden';
  }

  function unlockScroll() {
    if (savedOverflow === null) return;
    document.documentElement.style.overflow = savedOverflow;
    savedOverflow = null;
  }

  function open() {
    if (!state.panel) {
      state.panel = makePanel();
      document.body.appendChild(state.panel);
    }
    state.open = true;
    state.panel.style.display = 'flex';
    state.launcher.style.display = 'none';
    state.launcher.setAttribute('aria-expanded', 'true');
    layout();
    try { state.frame.focus(); } catch (e) { /* ignore */ }
  }

  function closePanel() {
    // The iframe is kept (hidden): an ongoing conversation continues and reopens as it was.
    if (!state.panel) return;
    state.open = false;
    state.panel.style.display = 'none';
    state.launcher.style.display = 'inline-flex';
    state.launcher.setAttribute('aria-expanded', 'false');
    unlockScroll();
    try { state.launcher.focus(); } catch (e) { /* ignore */ }
  }

  function quickExit(url) {
    var target = FALLBACK_EXIT_URL;
    try {
      var u = new URL(url);
      if (u.protocol === 'https:' || u.protocol === 'http:') target = u.href;
    } catch (e) { /* keep the fallback */ }
    try { if (state.panel) state.panel.parentNode.removeChild(state.panel); } catch (e) { /* ignore */ }
    window.location.replace(target);
  }

  window.addEventListener('message', function (event) {
    if (event.origin !== gatewayOrigin) return;
    if (!state.frame || event.source !== state.frame.contentWindow) return;
    var data = event.data;
    if (!data || typeof data !== 'object') return;
    if (data.type === 'tsunagu:quick-exit') quickExit(data.url);
    else if (data.type === 'tsunagu:close') closePanel();
  });

  function mount() {
    state.launcher = makeLauncher();
    document.body.appendChild(state.launcher);
    if (small.addEventListener) small.addEventListener('change', layout);
    else if (small.addListener) small.addListener(layout);
  }

  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount);
})();
