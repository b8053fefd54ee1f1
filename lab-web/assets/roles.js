// What the logged-in user's role may do in the UI (the server checks again).

export const RIGHTS = {
  raw: ['admin', 'researcher', 'operator'],
  tag: ['admin', 'researcher'],
  jobs: ['admin', 'operator'],
  edit_segment: ['admin', 'researcher', 'operator'],
  withdraw: ['admin'],
  // Study set-ups: operators and stations read them, these edit them.
  edit_setups: ['admin', 'researcher'],
  admin: ['admin'],
  // Behind the glass: the observation room.
  live: ['admin', 'researcher', 'operator', 'observer'],
};

let currentUser = null;

/** Set once by app.js when /me answers. */
export function setUser(u) { currentUser = u; }
export function can(right) { return !!currentUser && (RIGHTS[right] || []).includes(currentUser.role); }
export function user() { return currentUser; }
