// Who is signed in on this console: set on login and from each `welcome`, cleared on logout.
// Read by the parts that show or compare the operator's own name.

let me = null;

export function user() { return me; }
export function setUser(u) { me = u; }

let onExpired = () => {};

/** `fn` takes the operator back to the login form, saying why (set once by the page). */
export function whenExpired(fn) { onExpired = fn; }

/** The session is gone (a 401, or the socket closed with 4001 / 4010). */
export function expire() { onExpired('login.expired'); }
