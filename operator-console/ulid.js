// ULID generator (https://github.com/ulid/spec): 48-bit millisecond timestamp
// + 80 random bits, encoded as 26 Crockford base32 characters.
// Monotonic (within one millisecond, or when the clock steps back, the random part is
// incremented), so ids made by one page sort in creation order. Shared by the console pages and
// the widget.

const ENCODING = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const TIME_MAX = 2 ** 48 - 1;

let lastTime = -1;
let lastRandom = null; // 16 five-bit values

function randomDigits() {
  const bytes = new Uint8Array(10); // 80 bits
  crypto.getRandomValues(bytes);
  const out = [];
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out.push((buffer >> bits) & 31);
    }
    buffer &= (1 << bits) - 1;
  }
  return out; // exactly 16 digits
}

function encodeTime(ms) {
  let t = ms;
  const chars = new Array(10);
  for (let i = 9; i >= 0; i--) {
    chars[i] = ENCODING[t % 32];
    t = Math.floor(t / 32);
  }
  return chars.join('');
}

/** Returns a new ULID string. */
export function ulid(now = Date.now()) {
  if (!Number.isInteger(now) || now < 0 || now > TIME_MAX) {
    throw new RangeError('ulid: time out of range');
  }
  let random;
  if (lastRandom !== null && now <= lastTime) {
    // Same millisecond, or the clock stepped back: keep the time and increment the random part,
    // so ids made here stay ordered.
    now = lastTime;
    random = lastRandom.slice();
    let i = 15;
    while (i >= 0 && random[i] === 31) {
      random[i] = 0;
      i--;
    }
    if (i < 0) {
      // 2^80 ids in one millisecond: cannot happen in practice; move to the next one.
      now += 1;
      random = randomDigits();
    } else {
      random[i] += 1;
    }
  } else {
    random = randomDigits();
  }
  lastTime = now;
  lastRandom = random;
  return encodeTime(now) + random.map((d) => ENCODING[d]).join('');
}

/** True when s looks like a canonical ULID. */
export function isUlid(s) {
  return typeof s === 'string' && /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/.test(s);
}

/** Milliseconds encoded in a ULID (NaN if invalid). */
export function ulidTime(s) {
  if (!isUlid(s)) return NaN;
  let t = 0;
  for (let i = 0; i < 10; i++) t = t * 32 + ENCODING.indexOf(s[i]);
  return t;
}
