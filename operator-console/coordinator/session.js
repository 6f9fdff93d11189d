// The signed-in person and whether the coordinator view is live. The page (coordinator.js)
// changes both on login, logout and when the stream stops; the panels only read them, and report
// an expired session (a 401) through expire(), which the page answers with its login form.

const ALLOWED_ROLES = ['coordinator', 'admin'];

let me = null;
let live = false;
let onExpired = () => {};

export function user() { return me; }
export function setUser(u) { me = u; }
export function isAllowed(u) { return !!u && ALLOWED_ROLES.includes(u.role); }
export function isAdmin() { return !!me && me.role === 'admin'; }

/** False while logged out, forbidden, or before the first snapshot: nothing loads then. */
export function isStopped() { return !live; }
export function setLive(on) { live = on; }

export function whenExpired(fn) { onExpired = fn; }
export function expire() { onExpired('login.expired'); }

/**
 * Emergency flagging is off on this gateway (no escalation key, the first-run default; the
 * server says so in /api/me). Then there are no records or audit trail to load, and asking for
 * them would only fail again and again: the page says flagging is off and how an admin turns it
 * on, instead of an error that promises a retry.
 */
export function flaggingOff() {
  return !!me && me.flagging === false;
}
