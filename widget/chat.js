/*
 * Tsunagu visitor chat (widget/chat.html), protocol version 1 (docs/protocol.md, "Visitor messages").
 *
 * Plain script, no dependencies, no build step, wrapped in one IIFE: nothing is exposed globally.
 * Strict CSP friendly: no eval, no inline handlers, styles only through classes and the CSSOM.
 *
 * What it keeps, and where: only sessionStorage (key "tsunagu"), so everything dies with the tab:
 *   { lang, token, conversation, last_seq, outbox: [{id, text, at}], end_id }
 * The outbox holds messages the server has not acknowledged yet, so a reload or a dropped
 * connection never loses what the person wrote; they are re-sent with the SAME client id (the
 * server applies a retried id once). The transcript itself is never stored on the device: after a
 * reload the widget resumes with last_seq 0 and the server replays the log.
 */
(function () {
  'use strict';

  var STORE_KEY = 'tsunagu';
  var FALLBACK_EXIT_URL = 'https://www.google.com/search?q=weather';
  var CATALOGUES = ['ja', 'ja-easy', 'en']; // UI languages shipped in i18n/
  var DEFAULT_LANG = 'ja';
  var PROTOCOL_VERSION = 1;
  var MAX_TEXT = 4000;          // Unicode scalar values, after trimming (protocol)
  var MAX_FRAME = 16384;        // bytes (protocol)
  var COUNTER_FROM = 3500;      // show the character counter near the limit
  var TYPING_THROTTLE_MS = 3000;
  var TYPING_IDLE_MS = 5000;
  var TYPING_REMOTE_TIMEOUT_MS = 15000;
  var ACK_DELAY_MS = 250;
  var HANDSHAKE_TIMEOUT_MS = 10000;
  var BACKOFF_BASE_MS = 500;
  var BACKOFF_MAX_MS = 10000;
  var ESC_WINDOW_MS = 1200;

  // ------------------------------------------------------------------------------------------
  // Small helpers
  // ------------------------------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  var inIframe = (function () {
    try { return window.self !== window.top; } catch (e) { return true; }
  })();
  var params = new URLSearchParams(location.search);
  var embedded = inIframe || params.get('embedded') === '1';

  var coarsePointer = window.matchMedia ? window.matchMedia('(pointer: coarse)') : { matches: false };

  /** Length in Unicode scalar values (what the server counts). */
  function charCount(s) {
    var n = 0;
    for (var i = 0; i < s.length; i++) {
      var c = s.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
        var d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) i++;
      }
      n++;
    }
    return n;
  }

  function utf8Length(s) {
    if (window.TextEncoder) return new TextEncoder().encode(s).length;
    return unescape(encodeURIComponent(s)).length;
  }

  /** The server trims with Rust's str::trim (Unicode White_Space); \s is close enough. */
  function trimText(s) { return s.replace(/^\s+|\s+$/g, ''); }

  // ------------------------------------------------------------------------------------------
  // ULID: 48-bit millisecond timestamp + 80 random bits, Crockford base32, 26 characters.
  // Monotonic within one millisecond (the random part is incremented), per the ULID spec.
  // ------------------------------------------------------------------------------------------

  var B32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  var ulidLastMs = -1;
  var ulidLastRand = null;

  function randomDigits() {
    var bytes = new Uint8Array(10); // 80 bits
    window.crypto.getRandomValues(bytes);
    var out = [];
    var buffer = 0;
    var bits = 0;
    for (var i = 0; i < bytes.length; i++) {
      buffer = (buffer << 8) | bytes[i];
      bits += 8;
      while (bits >= 5) {
        bits -= 5;
        out.push((buffer >> bits) & 31);
      }
      buffer &= (1 << bits) - 1;
    }
    return out; // 16 five-bit digits
  }

  function ulid() {
    var ms = Date.now();
    var rand;
    if (ulidLastRand && ms <= ulidLastMs) {
      // Same millisecond (or the clock stepped back): keep the time, increment the random part.
      ms = ulidLastMs;
      rand = ulidLastRand.slice();
      var i = 15;
      while (i >= 0 && rand[i] === 31) { rand[i] = 0; i--; }
      if (i < 0) { ms += 1; rand = randomDigits(); } else { rand[i] += 1; }
    } else {
      rand = randomDigits();
    }
    ulidLastMs = ms;
    ulidLastRand = rand;
    var time = '';
    var t = ms;
    for (var k = 0; k < 10; k++) {
      time = B32.charAt(t % 32) + time;
      t = Math.floor(t / 32);
    }
    var r = '';
    for (var j = 0; j < 16; j++) r += B32.charAt(rand[j]);
    return time + r;
  }

  // ------------------------------------------------------------------------------------------
  // Session storage (never localStorage, never cookies)
  // ------------------------------------------------------------------------------------------

  var memoryStore = null; // used only if sessionStorage is blocked (e.g. some third-party iframes)

  function loadStore() {
    try {
      var raw = window.sessionStorage.getItem(STORE_KEY);
      return raw ? (JSON.parse(raw) || {}) : {};
    } catch (e) {
      return memoryStore || {};
    }
  }

  function saveStore() {
    var data = {
      lang: S.lang,
      token: S.token,
      conversation: S.conversation,
      last_seq: S.lastSeq,
      outbox: S.outbox,
      end_id: S.endId
    };
    try {
      window.sessionStorage.setItem(STORE_KEY, JSON.stringify(data));
    } catch (e) {
      memoryStore = data;
    }
  }

  function wipeStore() {
    memoryStore = null;
    try { window.sessionStorage.clear(); } catch (e) { /* nothing to wipe */ }
  }

  // ------------------------------------------------------------------------------------------
  // State
  // ------------------------------------------------------------------------------------------

  var S = {
    lang: DEFAULT_LANG,
    cat: {},
    config: null,
    screen: 'loading',
    // conversation
    token: null,
    conversation: null,
    lastSeq: 0,          // highest log seq rendered
    ackedSeq: 0,         // highest seq acknowledged to the server
    outbox: [],          // [{id, text, at}] sent by the person, not yet acknowledged
    els: {},             // client id -> message element (own messages)
    endId: null,         // client id of a requested `end` not yet confirmed by `ended`
    ended: false,
    notFound: false,
    operatorPresent: false,
    queue: null,
    requeued: false,
    limits: { max_text: MAX_TEXT, max_frame: MAX_FRAME },
    // socket
    ws: null,
    welcomed: false,
    connState: 'offline',
    connReason: '',
    attempt: 0,
    retryTimer: null,
    handshakeTimer: null,
    heartbeatTimer: null,
    heartbeatMs: 15000,
    lastRx: 0,
    superseded: false,
    fatal: false,
    exiting: false,
    // typing
    typingActive: false,
    typingSentAt: 0,
    typingIdleTimer: null,
    remoteTypingTimer: null,
    ackTimer: null,
    outboxRetryTimer: null,
    errorTimer: null,
    busyTimer: null
  };

  // ------------------------------------------------------------------------------------------
  // i18n
  // ------------------------------------------------------------------------------------------

  function t(key, vars) {
    var s = S.cat[key];
    if (typeof s !== 'string') return '';
    if (vars) {
      s = s.replace(/\{(\w+)\}/g, function (m, name) {
        return Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : m;
      });
    }
    return s;
  }

  function fetchJson(url) {
    return fetch(url, { credentials: 'omit', cache: 'no-cache' }).then(function (res) {
      if (!res.ok) throw new Error('HTTP ' + res.status);
      return res.json();
    });
  }

  function loadCatalogue(lang) {
    // Relative to the page: /widget/ and /widget/chat.html both resolve to /widget/i18n/.
    return fetchJson('i18n/' + encodeURIComponent(lang) + '.json').then(function (cat) {
      S.cat = cat;
      S.lang = lang;
    });
  }

  function applyTexts(root) {
    root = root || document;
    var nodes = root.querySelectorAll('[data-i18n]');
    for (var i = 0; i < nodes.length; i++) nodes[i].textContent = t(nodes[i].getAttribute('data-i18n'));
    nodes = root.querySelectorAll('[data-i18n-aria-label]');
    for (i = 0; i < nodes.length; i++) nodes[i].setAttribute('aria-label', t(nodes[i].getAttribute('data-i18n-aria-label')));
    nodes = root.querySelectorAll('[data-i18n-placeholder]');
    for (i = 0; i < nodes.length; i++) nodes[i].setAttribute('placeholder', t(nodes[i].getAttribute('data-i18n-placeholder')));
    document.documentElement.lang = S.cat.html_lang || S.lang;
    document.title = t('page_title');
    $('enter-hint').textContent = coarsePointer.matches ? '' : t('input_hint_enter');
    renderHelplines();
    renderPhone();
    renderLangSelect();
    renderConn();
    renderQueue();
    updateCounter();
  }

  /** The language sent to the gateway for routing: plain Japanese is Japanese. */
  function wireLang(lang) {
    return lang === 'ja-easy' ? 'ja' : lang;
  }

  function availableLangs() {
    var fromConfig = (S.config && Array.isArray(S.config.languages) && S.config.languages.length)
      ? S.config.languages : ['ja', 'en'];
    var out = [];
    fromConfig.forEach(function (l) {
      if (CATALOGUES.indexOf(l) >= 0 && out.indexOf(l) < 0) out.push(l);
      if (l === 'ja' && out.indexOf('ja-easy') < 0) out.push('ja-easy');
    });
    if (out.indexOf(S.lang) < 0) out.unshift(S.lang);
    return out;
  }

  function renderLangSelect() {
    var sel = $('lang-select');
    var names = S.cat.language_names || {};
    var langs = availableLangs();
    sel.textContent = '';
    langs.forEach(function (l) {
      var opt = document.createElement('option');
      opt.value = l;
      opt.textContent = names[l] || l;
      if (l === 'en') opt.lang = 'en'; else opt.lang = 'ja';
      if (l === S.lang) opt.selected = true;
      sel.appendChild(opt);
    });
  }

  function onLangChange() {
    var lang = $('lang-select').value;
    if (CATALOGUES.indexOf(lang) < 0 || lang === S.lang) return;
    loadCatalogue(lang).then(function () {
      saveStore();
      applyTexts();
      $('lang-select').focus();
    }, function () {
      renderLangSelect(); // could not load: stay on the current language
    });
  }

  // ------------------------------------------------------------------------------------------
  // Screens
  // ------------------------------------------------------------------------------------------

  function showScreen(name, focus) {
    S.screen = name;
    $('loading').hidden = true;
    document.documentElement.classList.remove('is-loading');
    $('screen-welcome').hidden = name !== 'welcome';
    $('screen-chat').hidden = name !== 'chat';
    $('screen-ended').hidden = name !== 'ended';
    document.documentElement.setAttribute('data-screen', name);
    if (focus) {
      var target = name === 'welcome' ? $('welcome-title') : name === 'chat' ? $('chat-title') : $('ended-title');
      try { target.focus({ preventScroll: false }); } catch (e) { target.focus(); }
    }
  }

  function renderPhone() {
    var phone = S.config && S.config.phone;
    var has = !!(phone && phone.number);
    $('phone-choice').hidden = !has;
    $('queue-phone').hidden = !has;
    if (!has) return;
    var href = 'tel:' + String(phone.number).replace(/[^0-9+#*]/g, '');
    $('phone-link').href = href;
    $('phone-number').textContent = phone.number;
    var hours = $('phone-hours');
    hours.hidden = !phone.hours;
    hours.textContent = phone.hours ? t('phone_hours', { hours: phone.hours }) : '';
    var ql = $('queue-phone-link');
    ql.href = href;
    ql.textContent = t('phone_button') + ' ' + phone.number + (phone.hours ? ' (' + t('phone_hours', { hours: phone.hours }) + ')' : '');
  }

  function renderHelplines() {
    var lists = document.querySelectorAll('[data-helplines]');
    var items = Array.isArray(S.cat.helplines) ? S.cat.helplines : [];
    for (var i = 0; i < lists.length; i++) {
      var ul = lists[i];
      ul.textContent = '';
      items.forEach(function (h) {
        var li = document.createElement('li');
        var name = document.createElement('span');
        name.className = 'helpline-name';
        name.textContent = h.name;
        li.appendChild(name);
        if (h.note) {
          var note = document.createElement('span');
          note.className = 'helpline-note';
          note.textContent = h.note;
          li.appendChild(note);
        }
        var a = document.createElement('a');
        a.className = 'tel-link helpline-number';
        a.href = 'tel:' + String(h.number).replace(/[^0-9+#*]/g, '');
        // The visible number is the link's name (WCAG 2.5.3); the organisation's name beside it
        // gives the context, and the description says what the link does.
        a.textContent = h.number;
        a.title = t('call_label', { name: h.name, number: h.number });
        li.appendChild(a);
        ul.appendChild(li);
      });
    }
  }

  // ------------------------------------------------------------------------------------------
  // Connection state
  // ------------------------------------------------------------------------------------------

  function setConn(state, reason) {
    S.connState = state;
    S.connReason = reason || '';
    renderConn();
  }

  function renderConn() {
    var el = $('connection-status');
    el.setAttribute('data-state', S.connState);
    var key;
    if (S.connReason === 'superseded') key = 'conn_superseded';
    else if (S.connState === 'connected') key = 'conn_connected';
    else if (S.connState === 'offline') key = 'conn_offline';
    else if (S.connReason === 'connecting') key = 'conn_connecting';
    else key = 'conn_reconnecting';
    $('connection-text').textContent = t(key);
    $('reconnect-here').hidden = S.connReason !== 'superseded';
    $('composer').classList.toggle('is-offline', S.connState !== 'connected');
  }

  // ------------------------------------------------------------------------------------------
  // Socket
  // ------------------------------------------------------------------------------------------

  function socketOpen() {
    return !!(S.ws && S.ws.readyState === 1 && S.welcomed);
  }

  function wsSend(obj) {
    if (!socketOpen()) return false;
    try {
      S.ws.send(JSON.stringify(obj));
      return true;
    } catch (e) {
      return false;
    }
  }

  function connect() {
    clearTimeout(S.retryTimer);
    S.retryTimer = null;
    if (S.ws || S.ended || S.exiting || S.fatal) return;
    var url = (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + '/ws/visitor';
    var ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    S.ws = ws;
    S.welcomed = false;
    S.superseded = false;
    if (S.connState !== 'offline') setConn('reconnecting', S.token || S.attempt ? '' : 'connecting');
    clearTimeout(S.handshakeTimer);
    S.handshakeTimer = setTimeout(function () {
      if (S.ws === ws && !S.welcomed) dropSocket(); // a connection that never says welcome
    }, HANDSHAKE_TIMEOUT_MS);

    ws.onopen = function () {
      if (S.ws !== ws) return;
      var hello = { type: 'hello', v: PROTOCOL_VERSION, id: ulid() };
      S.helloId = hello.id;
      if (S.token) hello.resume = { token: S.token, last_seq: S.lastSeq };
      else hello.start = { lang: wireLang(S.lang) };
      try { ws.send(JSON.stringify(hello)); } catch (e) { /* onclose follows */ }
    };
    ws.onmessage = function (ev) {
      if (S.ws !== ws) return;
      S.lastRx = Date.now();
      if (typeof ev.data !== 'string') return;
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg && typeof msg === 'object') handleServer(msg);
    };
    ws.onerror = function () { /* a close event always follows */ };
    ws.onclose = function (ev) {
      if (S.ws !== ws) return;
      onSocketClosed(ev.code);
    };
  }

  /** Drops the current socket (if any) and reconnects with backoff. */
  function dropSocket() {
    var ws = S.ws;
    if (!ws) return;
    S.ws = null;
    try { ws.close(); } catch (e) { /* already closing */ }
    onSocketClosed(1006);
  }

  function resetSocketTimers() {
    clearTimeout(S.handshakeTimer);
    clearInterval(S.heartbeatTimer);
    S.heartbeatTimer = null;
  }

  function onSocketClosed(code) {
    S.ws = null;
    S.welcomed = false;
    S.typingActive = false;
    resetSocketTimers();
    showRemoteTyping(false);
    if (S.exiting) return;
    if (code === 4004 || S.notFound) { conversationGone(); return; }
    if (S.ended) return;
    if (code === 4009) {
      // Superseded: the same conversation was opened in another window (e.g. a duplicated tab).
      // Do not fight over it; let the person choose to continue here.
      S.superseded = true;
      setConn('offline', 'superseded');
      return;
    }
    if (code === 4002) {
      S.fatal = true;
      setConn('offline');
      showError('unsupported_version', true);
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (S.retryTimer || S.ended || S.exiting || S.fatal || S.superseded) return;
    var base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, S.attempt));
    var delay = Math.min(BACKOFF_MAX_MS, base * (0.8 + Math.random() * 0.4)); // ±20 % jitter
    S.attempt = Math.min(S.attempt + 1, 20);
    setConn(navigator.onLine === false ? 'offline' : 'reconnecting');
    S.retryTimer = setTimeout(function () {
      S.retryTimer = null;
      connect();
    }, delay);
  }

  function reconnectNow() {
    if (S.screen !== 'chat' || S.ended || S.exiting || S.fatal) return;
    S.superseded = false;
    if (S.ws) {
      if (socketOpen()) { setConn('connected'); wsSend({ type: 'ping', id: ulid() }); }
      return;
    }
    clearTimeout(S.retryTimer);
    S.retryTimer = null;
    S.attempt = 0;
    setConn('reconnecting');
    connect();
  }

  function startHeartbeat() {
    clearInterval(S.heartbeatTimer);
    S.heartbeatTimer = setInterval(function () {
      if (!socketOpen()) return;
      // Nothing (not even a pong) for a long time: the connection is dead even if it looks open.
      if (Date.now() - S.lastRx > S.heartbeatMs * 2.5) { dropSocket(); return; }
      wsSend({ type: 'ping', id: ulid() });
    }, S.heartbeatMs);
  }

  // ------------------------------------------------------------------------------------------
  // Server messages
  // ------------------------------------------------------------------------------------------

  function handleServer(msg) {
    switch (msg.type) {
      case 'welcome': onWelcome(msg); break;
      case 'queue': onQueue(msg); break;
      case 'event': onEvent(msg); break;
      case 'typing': if (msg.from === 'operator') showRemoteTyping(!!msg.active); break;
      case 'ack': onAck(msg); break;
      case 'error': onError(msg); break;
      case 'pong': break;
      case 'gone': onGone(msg); break;
      default: break;
    }
  }

  function onWelcome(msg) {
    clearTimeout(S.handshakeTimer);
    if (S.conversation && msg.conversation && msg.conversation !== S.conversation) {
      // A different conversation than the one on screen: start the view afresh.
      clearMessages();
    }
    S.welcomed = true;
    S.attempt = 0;
    S.token = msg.token || S.token;
    S.conversation = msg.conversation || S.conversation;
    S.heartbeatMs = Math.max(1000, Number(msg.heartbeat_ms) || 15000);
    if (msg.limits) {
      S.limits.max_text = Number(msg.limits.max_text) || MAX_TEXT;
      S.limits.max_frame = Number(msg.limits.max_frame) || MAX_FRAME;
    }
    saveStore();
    setConn('connected');
    startHeartbeat();

    if (msg.state === 'active') {
      S.operatorPresent = true;
      renderQueue();
    } else if (msg.state === 'queued') {
      S.operatorPresent = false;
      renderQueue();
    } else if (msg.state === 'ended' && Number(msg.last_seq) <= S.lastSeq) {
      // Everything, including the end, was already shown here.
      conversationEnded(null);
      return;
    }

    // Re-send what the server has not acknowledged, with the same ids (it dedupes).
    S.outbox.forEach(function (item) { sendOutboxItem(item); });
    if (S.endId) wsSend({ type: 'end', id: S.endId });
    // Let the replay settle before the log is announced live again.
    clearTimeout(S.busyTimer);
    S.busyTimer = setTimeout(function () { $('messages').removeAttribute('aria-busy'); }, 800);
  }

  function onQueue(msg) {
    S.queue = {
      position: Number(msg.position) || 0,
      wait_minutes: (msg.wait_minutes === null || msg.wait_minutes === undefined) ? null : Number(msg.wait_minutes),
      operators_on_duty: Number(msg.operators_on_duty) || 0,
      overloaded: msg.overloaded === true
    };
    renderQueue();
  }

  function renderQueue() {
    var panel = $('queue-panel');
    var waiting = S.screen === 'chat' && !S.operatorPresent && !S.ended;
    panel.hidden = !waiting;
    if (!waiting) return;
    var pos = $('queue-position');
    var wait = $('queue-wait');
    var none = $('queue-none');
    var busy = $('queue-overloaded');
    var q = S.queue;
    if (!q || !q.position) {
      pos.textContent = S.requeued ? t('queue_requeued') : t('queue_connecting');
      wait.textContent = '';
      none.hidden = true;
      busy.hidden = true;
      return;
    }
    pos.textContent = t('queue_position', { position: q.position });
    // Overloaded mode: many people are reaching out; they may keep waiting, and other
    // helplines are listed (the same list as when nobody is on duty).
    busy.hidden = !q.overloaded;
    if (q.wait_minutes === null) {
      // No estimate: nobody is on duty (say so, with other helplines), or nothing to base one on
      // yet (say nothing rather than a made-up number).
      wait.textContent = '';
      var nobody = q.operators_on_duty === 0;
      none.hidden = q.overloaded || !nobody;
      if (nobody) $('queue-helplines').open = true;
    } else {
      none.hidden = true;
      wait.textContent = q.wait_minutes <= 1 ? t('queue_wait_soon') : t('queue_wait_minutes', { minutes: q.wait_minutes });
      if (q.overloaded) $('queue-helplines').open = true;
    }
  }

  function onEvent(msg) {
    var seq = Number(msg.seq);
    if (!seq || seq <= S.lastSeq) return; // already rendered: never twice
    if (S.conversation && msg.conversation && msg.conversation !== S.conversation) return;
    var e = msg.event || {};
    var at = Number(msg.at) || Date.now();
    var el;
    switch (e.kind) {
      case 'message':
        if (e.from === 'visitor') {
          el = e.id ? S.els[e.id] : null;
          if (el) {
            removeFromOutbox(e.id);
          } else {
            el = createMessage('visitor', e.text || '', at, e.operator);
            if (e.id) S.els[e.id] = el;
          }
          markSent(el, seq);
        } else {
          el = createMessage(e.from === 'operator' ? 'operator' : 'system', e.text || '', at, e.operator);
          el.setAttribute('data-seq', String(seq));
          if (e.from === 'operator') showRemoteTyping(false);
        }
        placeBySeq(el, seq);
        break;
      case 'operator_joined':
        S.operatorPresent = true;
        S.requeued = false;
        S.queue = null;
        addSystem(e.operator ? t('sys_operator_joined', { operator: e.operator }) : t('sys_operator_joined_anon'), seq, at);
        renderQueue();
        break;
      case 'operator_left':
        S.operatorPresent = false;
        S.requeued = true;
        S.queue = null;
        showRemoteTyping(false);
        addSystem(t(e.reason === 'transferred' ? 'sys_operator_left_transferred' : 'sys_operator_left_requeued'), seq, at);
        renderQueue();
        break;
      case 'ended':
        addSystem(endedText(e), seq, at);
        break;
      default:
        break; // unknown kinds are skipped but still acknowledged
    }
    S.lastSeq = seq;
    if (e.kind === 'ended') {
      wsSend({ type: 'ack', id: ulid(), seq: seq });
      S.ackedSeq = seq;
      conversationEnded(e);
      return;
    }
    saveStore();
    scheduleAck();
  }

  function endedText(e) {
    if (!e) return t('sys_ended_system');
    if (e.reason && e.reason !== 'ended') {
      var k = 'sys_ended_' + e.reason;
      if (t(k)) return t(k);
    }
    if (e.by === 'visitor') return t('sys_ended_visitor');
    if (e.by === 'operator') return t('sys_ended_operator');
    return t('sys_ended_system');
  }

  function scheduleAck() {
    if (S.ackTimer) return;
    S.ackTimer = setTimeout(function () {
      S.ackTimer = null;
      if (S.lastSeq > S.ackedSeq && wsSend({ type: 'ack', id: ulid(), seq: S.lastSeq })) S.ackedSeq = S.lastSeq;
    }, ACK_DELAY_MS);
  }

  function onAck(msg) {
    if (!msg.id) return;
    if (findOutbox(msg.id)) {
      removeFromOutbox(msg.id);
      var el = S.els[msg.id];
      if (el) {
        var seq = Number(msg.seq);
        markSent(el, seq || null);
        if (seq) placeBySeq(el, seq);
      }
      saveStore();
    }
    // The ack of `end` has no seq; the `ended` log entry that follows finishes the conversation.
  }

  function onError(msg) {
    var code = String(msg.code || '');
    if (code === 'not_found') { S.notFound = true; return; } // close 4004 follows
    if (code === 'unsupported_version') { S.fatal = true; showError(code, true); return; }
    if (code === 'rate_limited' && msg.id && msg.id === S.helloId) {
      // Too many new conversations from this network: say when, then try again by itself.
      var wait = Math.min(Math.max(Number(msg.retry_after_ms) || 60000, 1000), 600000);
      showError('start_limited', true, { minutes: Math.max(1, Math.ceil(wait / 60000)) });
      clearTimeout(S.handshakeTimer);
      S.handshakeTimer = setTimeout(function () { dropSocket(); }, wait);
      return;
    }
    var retryMs = Math.min(Math.max(Number(msg.retry_after_ms) || 5000, 500), 60000);
    var item = msg.id ? findOutbox(msg.id) : null;
    if (item) {
      if (code === 'unavailable' || code === 'rate_limited') {
        // Nothing was stored: try again later with the same id.
        item.retry = true;
        scheduleOutboxRetry(code === 'rate_limited' ? retryMs : 2000);
        showError(code, false, { seconds: Math.ceil(retryMs / 1000) });
      } else {
        // text_too_long, invalid, out_of_order...: this message will never be accepted.
        removeFromOutbox(item.id);
        saveStore();
        var el = S.els[item.id];
        if (el) markFailed(el);
        showError(code === 'text_too_long' || code === 'invalid' || code === 'out_of_order' ? code : 'generic');
      }
      return;
    }
    if (msg.id && msg.id === S.endId) {
      if (code === 'unavailable' || code === 'rate_limited') {
        setTimeout(function () { if (S.endId) wsSend({ type: 'end', id: S.endId }); }, 2000);
      } else {
        S.endId = null;
        saveStore();
        $('end-button').disabled = false;
        $('end-button').textContent = t('end_button');
        showError('generic');
      }
      return;
    }
    // Errors about pings, typing or acks are not the person's concern; only say what matters.
    if (code === 'rate_limited' || code === 'unavailable') showError(code);
  }

  // ------------------------------------------------------------------------------------------
  // Messages
  // ------------------------------------------------------------------------------------------

  var LINK_RE = /(https?:\/\/[^\s<>"'）」】、。]+)|((?:\+81[- ]?|0)\d{1,4}-\d{1,4}-\d{3,4})/g;

  /** Appends text with web addresses and phone numbers as links (never innerHTML). */
  function appendLinkified(parent, text) {
    var last = 0;
    var m;
    LINK_RE.lastIndex = 0;
    while ((m = LINK_RE.exec(text)) !== null) {
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      var a = document.createElement('a');
      if (m[1]) {
        a.href = m[1];
        a.target = '_blank';
        a.rel = 'noopener noreferrer';
      } else {
        a.href = 'tel:' + m[2].replace(/[^0-9+]/g, '');
        a.className = 'msg-tel';
      }
      a.textContent = m[0];
      parent.appendChild(a);
      last = m.index + m[0].length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function timeText(at) {
    try {
      return new Date(at).toLocaleTimeString(S.cat.html_lang || 'ja', { hour: '2-digit', minute: '2-digit' });
    } catch (e) {
      return '';
    }
  }

  function createMessage(from, text, at, operatorName) {
    var li = document.createElement('li');
    li.className = 'msg msg-' + from;
    li.setAttribute('data-testid', 'message');
    li.setAttribute('data-from', from);

    var who = document.createElement('span');
    who.className = from === 'operator' ? 'msg-who' : 'visually-hidden';
    who.textContent = from === 'visitor' ? t('from_visitor')
      : from === 'operator' ? (operatorName ? t('from_operator_named', { operator: operatorName }) : t('from_operator'))
        : t('from_system');
    li.appendChild(who);

    var body = document.createElement('p');
    body.className = 'msg-body';
    if (from === 'operator') appendLinkified(body, text); else body.textContent = text;
    li.appendChild(body);

    if (from !== 'system') {
      var meta = document.createElement('span');
      meta.className = 'msg-meta';
      var time = document.createElement('time');
      time.dateTime = new Date(at).toISOString();
      time.textContent = timeText(at);
      meta.appendChild(time);
      if (from === 'visitor') {
        var st = document.createElement('span');
        st.className = 'msg-state';
        meta.appendChild(st);
      }
      li.appendChild(meta);
    }
    return li;
  }

  function setOwnState(el, state) {
    el.setAttribute('data-state', state);
    var st = el.querySelector('.msg-state');
    if (st) st.textContent = t('state_' + state);
  }

  function markSent(el, seq) {
    setOwnState(el, 'sent');
    if (seq) el.setAttribute('data-seq', String(seq));
  }

  function markFailed(el) {
    setOwnState(el, 'failed');
  }

  function addSystem(text, seq, at) {
    var el = createMessage('system', text, at);
    el.setAttribute('data-seq', String(seq));
    placeBySeq(el, seq);
  }

  /**
   * Inserts (or moves) a log element in seq order. Pending own messages (no seq yet) always stay
   * at the end, after everything the server has ordered.
   */
  function placeBySeq(el, seq) {
    var list = $('messages');
    var stick = nearBottom();
    var before = null;
    var kids = list.children;
    for (var i = 0; i < kids.length; i++) {
      var c = kids[i];
      if (c === el) continue;
      var cs = c.getAttribute('data-seq');
      if (!cs || Number(cs) > seq) { before = c; break; }
    }
    if (before) {
      if (el.nextSibling !== before || el.parentNode !== list) list.insertBefore(el, before);
    } else if (list.lastChild !== el) {
      list.appendChild(el);
    }
    if (stick) scrollToBottom();
  }

  function appendPending(item) {
    var el = createMessage('visitor', item.text, item.at);
    setOwnState(el, 'pending');
    S.els[item.id] = el;
    $('messages').appendChild(el);
    return el;
  }

  function nearBottom() {
    var list = $('messages');
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function scrollToBottom() {
    var list = $('messages');
    list.scrollTop = list.scrollHeight;
  }

  function clearMessages() {
    $('messages').textContent = '';
    S.els = {};
    S.lastSeq = 0;
    S.ackedSeq = 0;
    // Own messages not yet acknowledged stay visible as pending.
    S.outbox.forEach(appendPending);
  }

  function findOutbox(id) {
    for (var i = 0; i < S.outbox.length; i++) if (S.outbox[i].id === id) return S.outbox[i];
    return null;
  }

  function removeFromOutbox(id) {
    S.outbox = S.outbox.filter(function (x) { return x.id !== id; });
  }

  function sendOutboxItem(item) {
    item.retry = false;
    return wsSend({ type: 'send', id: item.id, text: item.text });
  }

  function scheduleOutboxRetry(ms) {
    clearTimeout(S.outboxRetryTimer);
    S.outboxRetryTimer = setTimeout(function () {
      S.outbox.forEach(function (item) { if (item.retry) sendOutboxItem(item); });
    }, ms);
  }

  // ------------------------------------------------------------------------------------------
  // Composer
  // ------------------------------------------------------------------------------------------

  function sendMessage() {
    if (S.ended || S.screen !== 'chat') return;
    var input = $('message-input');
    var text = trimText(input.value);
    if (!text) return;
    if (charCount(text) > S.limits.max_text) {
      showError('text_too_long');
      return;
    }
    var item = { id: ulid(), text: text, at: Date.now() };
    if (utf8Length(JSON.stringify({ type: 'send', id: item.id, text: text })) > S.limits.max_frame) {
      showError('text_too_long');
      return;
    }
    S.outbox.push(item);
    saveStore();
    appendPending(item);
    scrollToBottom();
    input.value = '';
    autoGrow();
    updateCounter();
    stopTyping();
    sendOutboxItem(item); // if the socket is down it goes out after the next welcome
    input.focus();
  }

  function updateCounter() {
    var input = $('message-input');
    var el = $('char-count');
    if (!input || !el) return;
    var n = charCount(trimText(input.value));
    var max = S.limits.max_text;
    var over = n > max;
    el.hidden = n < COUNTER_FROM;
    el.classList.toggle('is-over', over);
    el.textContent = over ? t('char_over', { over: n - max, max: max }) : t('char_count', { count: n, max: max });
    $('send-button').disabled = over;
  }

  function autoGrow() {
    var input = $('message-input');
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight + 2, 180) + 'px';
  }

  function sendTyping(active) {
    if (wsSend({ type: 'typing', id: ulid(), active: active })) {
      S.typingActive = active;
      S.typingSentAt = Date.now();
    }
  }

  function onTypingInput() {
    if (!trimText($('message-input').value)) { stopTyping(); return; }
    var now = Date.now();
    // At most one typing frame every 3 s; "true" is refreshed while the person keeps writing.
    if (now - S.typingSentAt >= TYPING_THROTTLE_MS) sendTyping(true);
    clearTimeout(S.typingIdleTimer);
    S.typingIdleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    clearTimeout(S.typingIdleTimer);
    S.typingIdleTimer = null;
    if (S.typingActive) sendTyping(false);
    S.typingActive = false;
  }

  function showRemoteTyping(active) {
    clearTimeout(S.remoteTypingTimer);
    $('typing-indicator').hidden = !active;
    if (active) {
      // If the "false" never arrives (operator vanished), do not show it forever.
      S.remoteTypingTimer = setTimeout(function () { $('typing-indicator').hidden = true; }, TYPING_REMOTE_TIMEOUT_MS);
    }
  }

  function showError(code, sticky, vars) {
    var el = $('chat-error');
    var text = t('error_' + code) || t('error_generic');
    text = text.replace('{max}', String(S.limits.max_text));
    if (vars) Object.keys(vars).forEach(function (k) { text = text.replace('{' + k + '}', String(vars[k])); });
    el.textContent = text;
    el.hidden = false;
    clearTimeout(S.errorTimer);
    if (!sticky) S.errorTimer = setTimeout(function () { el.hidden = true; }, 8000);
  }

  // ------------------------------------------------------------------------------------------
  // Start, end, gone
  // ------------------------------------------------------------------------------------------

  function resetConversation() {
    S.token = null;
    S.conversation = null;
    S.lastSeq = 0;
    S.ackedSeq = 0;
    S.outbox = [];
    S.els = {};
    S.endId = null;
    S.ended = false;
    S.notFound = false;
    S.operatorPresent = false;
    S.queue = null;
    S.requeued = false;
    S.superseded = false;
    S.attempt = 0;
    $('messages').textContent = '';
    $('message-input').value = '';
    $('chat-error').hidden = true;
    $('end-button').disabled = false;
    $('end-button').textContent = t('end_button');
    $('composer').hidden = false;
    showRemoteTyping(false);
    updateCounter();
    autoGrow();
  }

  function startChat() {
    if (S.screen === 'chat') return;
    resetConversation();
    saveStore(); // the language only, until welcome gives a token
    showScreen('chat', true);
    renderQueue();
    setConn('reconnecting', 'connecting');
    connect();
  }

  // The confirm step is a non-modal <dialog> over an overlay that stays below the top bar, so
  // the quick exit button remains usable while it is open (a modal dialog would make it inert).
  function requestEnd() {
    var dlg = $('end-dialog');
    if (typeof dlg.show !== 'function') { confirmEnd(); return; } // very old browsers
    if (!dlg.open) dlg.show();
    $('overlay').hidden = false;
    $('end-cancel').focus();
  }

  function closeEndDialog(returnFocus) {
    var dlg = $('end-dialog');
    if (dlg.open) dlg.close();
    $('overlay').hidden = true;
    if (returnFocus && !$('screen-chat').hidden) $('end-button').focus();
  }

  function confirmEnd() {
    closeEndDialog(false);
    if (S.ended) return;
    S.endId = S.endId || ulid();
    saveStore();
    stopTyping();
    $('end-button').disabled = true;
    $('end-button').textContent = t('ending');
    wsSend({ type: 'end', id: S.endId }); // or after the next welcome
  }

  function conversationEnded(e) {
    S.ended = true;
    finishConversation();
    $('ended-title').textContent = t('ended_title');
    var reason = $('ended-reason');
    reason.hidden = !e || e.by === 'visitor';
    reason.textContent = e ? endedText(e) : '';
    $('ended-body').hidden = false;
    $('notfound-body').hidden = true;
    $('gone-body').hidden = true;
    $('screen-ended').setAttribute('data-reason', 'ended');
    showScreen('ended', true);
  }

  /** `gone`: the service lost this conversation (its store was restarted or emptied). */
  function onGone(msg) {
    if (S.conversation && msg.conversation && msg.conversation !== S.conversation) return;
    conversationLost();
  }

  function conversationLost() {
    // Said plainly, with a way forward: the person may be in the middle of something hard, and
    // a silent page would read as being ignored. Other helplines are on the same screen.
    S.ended = true;
    finishConversation();
    $('ended-title').textContent = t('gone_title');
    $('ended-reason').hidden = true;
    $('ended-body').hidden = true;
    $('notfound-body').hidden = true;
    $('gone-body').hidden = false;
    $('screen-ended').setAttribute('data-reason', 'gone');
    showScreen('ended', true);
  }

  function conversationGone() {
    // Error not_found / close 4004: the token is unknown or the conversation was deleted.
    S.ended = true;
    finishConversation();
    $('ended-title').textContent = t('notfound_title');
    $('ended-reason').hidden = true;
    $('ended-body').hidden = true;
    $('notfound-body').hidden = false;
    $('gone-body').hidden = true;
    $('screen-ended').setAttribute('data-reason', 'not_found');
    showScreen('ended', true);
  }

  /** Common close-down: timers, socket, storage; keeps a read-only copy of the transcript. */
  function finishConversation() {
    clearTimeout(S.ackTimer); S.ackTimer = null;
    clearTimeout(S.retryTimer); S.retryTimer = null;
    clearTimeout(S.outboxRetryTimer);
    clearTimeout(S.typingIdleTimer);
    resetSocketTimers();
    showRemoteTyping(false);
    closeEndDialog(false);
    var ws = S.ws;
    S.ws = null;
    S.welcomed = false;
    if (ws) { try { ws.close(1000); } catch (e) { /* closed */ } }
    setConn('offline');
    wipeStore();
    S.token = null;
    S.conversation = null;
    S.outbox = [];
    S.endId = null;

    // A read-only copy for the person to read again (e.g. a number the counsellor gave), in
    // memory only. Test ids are stripped so the copy is never mistaken for the live list.
    var list = $('transcript-list');
    list.textContent = '';
    var kids = $('messages').children;
    for (var i = 0; i < kids.length; i++) {
      var copy = kids[i].cloneNode(true);
      copy.removeAttribute('data-testid');
      list.appendChild(copy);
    }
    $('transcript').hidden = list.children.length === 0;
    $('transcript').open = false;
    $('messages').textContent = '';
    S.els = {};
  }

  function startAgain() {
    S.ended = false;
    S.notFound = false;
    $('transcript-list').textContent = '';
    $('transcript').hidden = true;
    showScreen('welcome', true);
  }

  // ------------------------------------------------------------------------------------------
  // Quick exit
  // ------------------------------------------------------------------------------------------

  function exitUrl() {
    var u = S.config && S.config.quick_exit_url;
    try {
      var parsed = new URL(u);
      if (parsed.protocol === 'https:' || parsed.protocol === 'http:') return parsed.href;
    } catch (e) { /* fall through */ }
    return FALLBACK_EXIT_URL;
  }

  function quickExit() {
    if (S.exiting) return;
    S.exiting = true;
    var url = exitUrl();
    var ws = S.ws;
    S.ws = null;
    // The person cannot come back to this conversation (storage is wiped), so end it at once
    // rather than leave an operator waiting for someone who has gone.
    if (ws) {
      try { if (ws.readyState === 1) ws.send(JSON.stringify({ type: 'end', id: ulid() })); } catch (e) { /* closed */ }
      try { ws.close(1000); } catch (e) { /* closed */ }
    }
    wipeStore();
    // Nothing of the conversation stays on screen, even for a moment.
    try { $('app').textContent = ''; document.title = ''; } catch (e) { /* ignore */ }
    if (inIframe) {
      try { window.parent.postMessage({ type: 'tsunagu:quick-exit', url: url }, '*'); } catch (e) { /* ignore */ }
      try { window.top.location.replace(url); } catch (e) { /* cross-origin top: the host script does it */ }
      try { location.replace('about:blank'); } catch (e) { /* ignore */ }
    } else {
      location.replace(url);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Wiring
  // ------------------------------------------------------------------------------------------

  function bind() {
    $('quick-exit').addEventListener('click', quickExit);
    var lastEsc = 0;
    document.addEventListener('keydown', function (e) {
      if (e.key !== 'Escape' && e.key !== 'Esc') return;
      if (e.isComposing || e.keyCode === 229) return; // Escape cancelling an IME conversion
      var now = Date.now();
      if (now - lastEsc <= ESC_WINDOW_MS) { e.preventDefault(); quickExit(); return; }
      lastEsc = now;
    }, true);

    $('lang-select').addEventListener('change', onLangChange);
    $('start-button').addEventListener('click', startChat);
    $('composer').addEventListener('submit', function (e) { e.preventDefault(); sendMessage(); });
    var input = $('message-input');
    input.addEventListener('keydown', function (e) {
      if (e.key !== 'Enter' || e.shiftKey || e.altKey || e.ctrlKey || e.metaKey) return;
      if (e.isComposing || e.keyCode === 229) return; // Enter confirming a Japanese IME conversion
      if (coarsePointer.matches) return; // phones: Enter is a new line, the button sends
      e.preventDefault();
      sendMessage();
    });
    input.addEventListener('input', function () {
      autoGrow();
      updateCounter();
      onTypingInput();
    });
    input.addEventListener('blur', function () {
      if (!trimText(input.value)) stopTyping();
    });

    $('end-button').addEventListener('click', requestEnd);
    $('end-confirm').addEventListener('click', confirmEnd);
    $('end-cancel').addEventListener('click', function () { closeEndDialog(true); });
    $('overlay').addEventListener('click', function () { closeEndDialog(true); });
    $('end-dialog').addEventListener('keydown', function (e) {
      if (e.key === 'Escape' || e.key === 'Esc') closeEndDialog(true);
      if (e.key === 'Tab') {
        // Keep Tab between the two buttons while the confirm step is open.
        var a = $('end-cancel');
        var b = $('end-confirm');
        if (e.shiftKey && document.activeElement === a) { e.preventDefault(); b.focus(); }
        else if (!e.shiftKey && document.activeElement === b) { e.preventDefault(); a.focus(); }
      }
    });
    $('reconnect-here').addEventListener('click', reconnectNow);
    $('start-again').addEventListener('click', startAgain);
    $('close-widget').hidden = !inIframe;
    $('close-widget').addEventListener('click', function () {
      try { window.parent.postMessage({ type: 'tsunagu:close' }, '*'); } catch (e) { /* ignore */ }
    });

    window.addEventListener('online', function () { if (!S.superseded) reconnectNow(); });
    window.addEventListener('offline', function () {
      // The device says it lost the network: treat the socket as gone (it usually is, and a
      // half-dead socket would otherwise take a few heartbeats to notice). Reconnects with
      // backoff; the "online" event retries at once.
      if (S.screen !== 'chat' || S.ended || S.superseded) return;
      if (S.ws) dropSocket(); else setConn('offline');
    });
    window.addEventListener('pageshow', function (e) {
      if (e.persisted) reconnectNow(); // restored from the back/forward cache
    });
    document.addEventListener('visibilitychange', function () {
      if (document.visibilityState !== 'visible' || S.screen !== 'chat' || S.ended) return;
      if (!S.ws && !S.superseded) reconnectNow();
      else if (socketOpen()) wsSend({ type: 'ping', id: ulid() });
    });
  }

  function init() {
    if (embedded) document.documentElement.classList.add('embedded');
    bind(); // quick exit works before anything has loaded

    var stored = loadStore();
    var wanted = stored.lang || params.get('lang') || DEFAULT_LANG;
    if (CATALOGUES.indexOf(wanted) < 0) wanted = DEFAULT_LANG;

    var configP = fetchJson('/api/widget-config').then(function (c) { S.config = c; }, function () { S.config = null; });
    var catP = loadCatalogue(wanted).catch(function () {
      return wanted === DEFAULT_LANG ? Promise.reject(new Error('no catalogue')) : loadCatalogue(DEFAULT_LANG);
    });

    Promise.all([catP, configP]).then(function () {
      applyTexts();
      if (stored.token) {
        // Same tab, after a reload: resume the conversation. The transcript is not stored on the
        // device, so resume from seq 0 and let the server replay it; the outbox is shown as
        // pending and re-sent with the same ids.
        S.token = stored.token;
        S.conversation = stored.conversation || null;
        S.outbox = Array.isArray(stored.outbox) ? stored.outbox.filter(function (x) {
          return x && typeof x.id === 'string' && typeof x.text === 'string';
        }) : [];
        S.endId = stored.end_id || null;
        S.lastSeq = 0;
        $('messages').setAttribute('aria-busy', 'true');
        S.outbox.forEach(appendPending);
        if (S.endId) { $('end-button').disabled = true; $('end-button').textContent = t('ending'); }
        showScreen('chat', false);
        renderQueue();
        setConn('reconnecting');
        connect();
      } else {
        showScreen('welcome', false);
      }
    }, function () {
      // Not even the Japanese catalogue loaded: keep the quick exit usable, retry shortly.
      $('loading').hidden = false;
      setTimeout(function () { location.reload(); }, 5000);
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
