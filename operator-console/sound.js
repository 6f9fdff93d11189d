// Short notification tones made with the Web Audio API (no asset files).
// Browsers only allow audio after a user gesture, so the context is created or
// resumed on the first click or key press.

const STORAGE_KEY = 'tsunagu.console.muted';
let ctx = null;
let muted = false;
try { muted = localStorage.getItem(STORAGE_KEY) === '1'; } catch (_) { /* ignore */ }
const listeners = new Set();

function notify() { for (const fn of listeners) { try { fn(); } catch (_) { /* ignore */ } } }

export function unlockAudio() {
  try {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return;
    if (!ctx) {
      ctx = new AC();
      ctx.onstatechange = notify;
    }
    if (ctx.state === 'suspended') ctx.resume().then(notify, () => {});
  } catch (_) { /* no audio: visual cues remain */ }
  notify();
}

/** Call once per page: unlocks audio on the first user gesture. */
export function installAudioUnlock() {
  const handler = () => unlockAudio();
  document.addEventListener('pointerdown', handler, { capture: true });
  document.addEventListener('keydown', handler, { capture: true });
}

export function audioReady() { return !!ctx && ctx.state === 'running'; }
export function isMuted() { return muted; }
export function setMuted(m) {
  muted = !!m;
  try { localStorage.setItem(STORAGE_KEY, muted ? '1' : '0'); } catch (_) { /* ignore */ }
  notify();
}
export function onSoundChange(fn) { listeners.add(fn); }

const PATTERNS = {
  // [frequency Hz, start s, duration s, volume]
  message: [[660, 0, 0.12, 0.15]],
  offer: [[523, 0, 0.16, 0.22], [784, 0.18, 0.24, 0.22]],
  alert: [[880, 0, 0.18, 0.28], [660, 0.22, 0.18, 0.28], [880, 0.44, 0.3, 0.28]],
  // Emergency flag: higher, longer and repeated by the coordinator view until acknowledged.
  emergency: [[988, 0, 0.16, 0.35], [740, 0.18, 0.16, 0.35], [988, 0.36, 0.16, 0.35], [740, 0.54, 0.16, 0.35], [988, 0.72, 0.4, 0.35]],
};

export function tone(kind = 'message') {
  if (muted || !ctx || ctx.state !== 'running') return;
  const pattern = PATTERNS[kind] || PATTERNS.message;
  try {
    const now = ctx.currentTime + 0.01;
    for (const [freq, start, dur, vol] of pattern) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = 'sine';
      osc.frequency.value = freq;
      const t0 = now + start;
      gain.gain.setValueAtTime(0.0001, t0);
      gain.gain.exponentialRampToValueAtTime(vol, t0 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + dur);
      osc.connect(gain);
      gain.connect(ctx.destination);
      osc.start(t0);
      osc.stop(t0 + dur + 0.05);
    }
  } catch (_) { /* never let sound break the console */ }
}

/**
 * Wire a mute toggle button (aria-pressed = sound on). Labels come from t().
 */
export function bindSoundToggle(button, t) {
  const render = () => {
    const locked = !muted && !audioReady();
    button.setAttribute('aria-pressed', muted ? 'false' : 'true');
    button.dataset.state = muted ? 'muted' : (locked ? 'locked' : 'on');
    button.textContent = muted ? t('sound.off') : t('sound.on');
    button.title = locked ? t('sound.locked') : '';
  };
  button.addEventListener('click', () => { setMuted(!muted); if (!muted) { unlockAudio(); tone('message'); } });
  onSoundChange(render);
  render();
  return render;
}
