// What the page remembers across visits (localStorage, JSON). Without storage (private
// mode, full) the page still works: reads give the fallback, writes are dropped.

export const KEYS = {
  name: 'roomcast.name',
  identity: 'roomcast.identity',
  rooms: 'roomcast.rooms',
  closedDms: 'roomcast.closedDms',
};

export const storage = {
  get(key, fallback) {
    try {
      const raw = localStorage.getItem(key);
      return raw == null ? fallback : JSON.parse(raw);
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      if (value === null || value === undefined) localStorage.removeItem(key);
      else localStorage.setItem(key, JSON.stringify(value));
    } catch {
      /* private mode or full: the app works without it */
    }
  },
};
