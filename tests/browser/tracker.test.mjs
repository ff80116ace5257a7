// Unit checks of src/collect/tracker.js in a fake window (no browser, no dependencies):
//   node --test tests/browser/tracker.test.mjs
// The real-browser journey is drive.mjs.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';

const SRC = readFileSync(new URL('../../src/collect/tracker.js', import.meta.url), 'utf8');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function memoryStorage() {
  const m = new Map();
  return {
    map: m,
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
  };
}

function target() {
  const l = {};
  return {
    addEventListener: (t, f) => (l[t] ||= []).push(f),
    dispatch: (t) => (l[t] || []).forEach((f) => f({ type: t })),
  };
}

// Loads the tracker into a fresh fake window. respond(call) gives {status, headers} per fetch.
function load({ data = {}, q, storage = memoryStorage(), href = 'https://shop.example/', referrer = '',
  respond = () => ({ status: 202 }), beacon } = {}) {
  const calls = [];
  const beacons = [];
  const warnings = [];
  let url = new URL(href);
  const win = target();
  const doc = target();
  const script = { src: 'https://collector.example/v1/tracker.js', dataset: { key: 'k1', flushInterval: '600000', ...data } };
  const w = Object.assign(win, {
    document: Object.assign(doc, { currentScript: script, referrer, visibilityState: 'visible', querySelector: () => script }),
    location: { get href() { return url.href; } },
    history: {
      pushState(s, t, u) { url = new URL(u, url); },
      replaceState(s, t, u) { url = new URL(u, url); },
    },
    crypto: globalThis.crypto,
    console: { warn: (m) => warnings.push(m), log() {} },
    navigator: beacon === undefined ? {} : {
      sendBeacon(u, blob) { beacons.push({ url: u, blob }); return beacon; },
    },
    fetch(u, opts) {
      const call = { url: u, opts, events: JSON.parse(opts.body) };
      calls.push(call);
      const r = respond(call, calls.length);
      if (r instanceof Error) return Promise.reject(r);
      const h = r.headers || {};
      return Promise.resolve({ status: r.status, headers: { get: (k) => h[k] ?? null }, text: async () => r.body ?? '{}' });
    },
    setTimeout: (f, ms) => { const h = setTimeout(f, ms); h.unref(); return h; }, // don't hold the test process
    clearTimeout, AbortController, TextEncoder, Blob,
  });
  Object.defineProperty(w, 'localStorage', { get() { if (storage === 'throws') throw new Error('SecurityError'); return storage; } });
  if (q) w.activityTracker = Object.assign(function () {}, { q });
  w.window = w;
  vm.createContext(w);
  vm.runInContext(SRC, w);
  const events = () => calls.flatMap((c) => c.events);
  const go = (u) => { url = new URL(u, url); };
  return { w, t: w.activityTracker, calls, beacons, warnings, events, storage, go };
}

const until = async (cond, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

test('replays the stub queue: identify before the automatic page_view, schema properties only', async () => {
  const { t, calls, events, warnings } = load({
    referrer: 'https://search.example/',
    q: [['identify', 'user-42'], ['track', 'add_to_cart', { product_id: 'p1', price: '9.5', extra: 'x', cart_value: -1 }], ['track', 'signup']],
  });
  await t.flush();
  const ev = events();
  assert.deepEqual(ev.map((e) => e.event_type), ['page_view', 'add_to_cart']);
  assert.equal(calls[0].url, 'https://collector.example/v1/events?key=k1');
  assert.equal(calls[0].opts.headers['Content-Type'], 'text/plain;charset=UTF-8');
  assert.equal(calls[0].opts.credentials, 'omit');
  assert.equal(calls[0].opts.keepalive, true);
  for (const e of ev) {
    assert.equal(e.user_id, 'user-42');
    assert.match(e.event_id, UUID);
    assert.match(e.session_id, UUID);
    assert.equal(e.page_url, 'https://shop.example/');
    assert.equal(e.referrer, 'https://search.example/');
    assert.ok(Date.parse(e.timestamp) <= Date.parse(e.sent_at));
    for (const f of ['user_agent', 'ip_address', 'device', 'location']) assert.ok(!(f in e), f);
  }
  assert.equal(ev[0].session_id, ev[1].session_id);
  assert.ok(!('properties' in ev[0]));
  assert.deepEqual(ev[1].properties, { product_id: 'p1', price: 9.5 });
  assert.ok(warnings.some((m) => m.includes('"signup"')));
  assert.ok(warnings.some((m) => m.includes('cart_value')));
  assert.deepEqual({ ...t.stats }, { queued: 2, sent: 2, accepted: 2, failed: 0, retried: 0, beaconed: 0 });
});

test('anonymous id persists across loads; identify persists; reset starts over', async () => {
  const storage = memoryStorage();
  const a = load({ storage });
  const anon = a.t.userId();
  assert.match(anon, /^anon-/);
  assert.equal(load({ storage }).t.userId(), anon);
  a.t.identify('user-7');
  assert.equal(load({ storage }).t.userId(), 'user-7');
  a.t.identify('');
  assert.equal(a.t.userId(), 'user-7');
  const session = a.t.sessionId();
  a.t('reset');
  assert.match(a.t.userId(), /^anon-/);
  assert.notEqual(a.t.userId(), anon);
  a.t.track('click', { product_id: 'p' });
  assert.notEqual(a.t.sessionId(), session);
});

test('a new session after the inactivity timeout', () => {
  const storage = memoryStorage();
  const a = load({ storage, data: { sessionTimeout: '1' } });
  const first = a.t.sessionId();
  assert.equal(load({ storage, data: { sessionTimeout: '1' } }).t.sessionId(), first);
  storage.setItem('activityTracker.last_activity', String(Date.now() - 61000));
  assert.notEqual(load({ storage, data: { sessionTimeout: '1' } }).t.sessionId(), first);
});

test('works without storage', async () => {
  const { t, events } = load({ storage: 'throws' });
  t.identify('u1');
  t.track('search', { search_query: 'mug' });
  await t.flush();
  assert.deepEqual(events().map((e) => [e.event_type, e.user_id.startsWith('anon-')]), [['page_view', true], ['search', false]]);
});

test('page_view on pushState and popstate, not when the URL stays; referrer is the previous URL', async () => {
  const { w, t, events, go } = load({ referrer: '' });
  w.history.pushState({}, '', '/products/p1');
  w.history.replaceState({}, '', '/products/p1');
  w.history.pushState({}, '', '/search?q=x');
  go('/products/p1');
  w.dispatch('popstate');
  w.dispatch('popstate');
  await t.flush();
  assert.deepEqual(events().map((e) => [e.page_url, e.referrer]), [
    ['https://shop.example/', null],
    ['https://shop.example/products/p1', 'https://shop.example/'],
    ['https://shop.example/search?q=x', 'https://shop.example/products/p1'],
    ['https://shop.example/products/p1', 'https://shop.example/search?q=x'],
  ]);
});

test('data-auto-pageview="false" sends no page_view by itself', async () => {
  const { w, t, calls } = load({ data: { autoPageview: 'false' } });
  w.history.pushState({}, '', '/x');
  await t.flush();
  assert.equal(calls.length, 0);
});

test('sends as soon as a batch is full, in batches of data-batch-size', async () => {
  const { t, calls } = load({ data: { batchSize: '3' } }); // page_view + 5 clicks
  for (let i = 0; i < 5; i++) t.track('click', { product_id: 'p' + i });
  await until(() => t.stats.accepted === 6);
  assert.deepEqual(calls.map((c) => c.events.length), [3, 3]);
});

test('retries 503 (honouring Retry-After), then delivers', async () => {
  const { t, calls } = load({ respond: (c, n) => (n === 1 ? { status: 503, headers: { 'Retry-After': '0' } } : { status: 202 }) });
  await t.flush();
  assert.equal(t.stats.retried, 1);
  await t.flush(); // during the backoff: must not cancel the scheduled retry
  await until(() => t.stats.accepted === 1, 3000);
  assert.equal(calls.length, 2);
  assert.equal(calls[0].events[0].event_id, calls[1].events[0].event_id);
});

test('the queue is bounded while the collector is unavailable: the oldest go', async () => {
  const { t, warnings } = load({ respond: () => ({ status: 503, headers: { 'Retry-After': '60' } }) });
  await t.flush();
  for (let i = 0; i < 1100; i++) t.track('click', { product_id: 'p' + i });
  assert.deepEqual([t.stats.queued, t.stats.failed, t.stats.sent], [1101, 101, 1]);
  assert.ok(warnings.some((m) => m.includes('queue full')));
});

test('network errors are retried a few times, then given up', async () => {
  const { w, t, calls, warnings } = load({ respond: () => new TypeError('Failed to fetch') });
  t.track('click', { product_id: 'p' });
  await t.flush();
  assert.ok(calls.length === 1 && t.stats.retried === 2 && t.stats.failed === 0);
  // Coming back online retries at once instead of after the backoff (1 s, 2 s, 4 s, ...).
  for (let i = 0; i < 4; i++) {
    w.dispatch('online');
    await t.flush();
  }
  assert.equal(t.stats.failed, 2);
  assert.equal(calls.length, 5);
  assert.equal(t.stats.accepted, 0);
  assert.ok(warnings.some((m) => m.includes('gave up')));
});

test('400/401/403/413 drop the batch and warn once', async () => {
  const { t, warnings } = load({ respond: () => ({ status: 401 }) });
  await t.flush();
  t.track('click', { product_id: 'p' });
  await t.flush();
  assert.deepEqual([t.stats.failed, t.stats.accepted, t.stats.retried], [2, 0, 0]);
  assert.equal(warnings.filter((m) => m.includes('HTTP 401')).length, 1);
});

test('a 400 drops only the events it names; the valid rest of the batch is sent again', async () => {
  const body = JSON.stringify({ accepted: 0, error: 'invalid_events', rejected: [{ index: 1, reason: 'invalid_amount' }] });
  const { t, calls, warnings } = load({ respond: (call, n) => (n === 2 ? { status: 400, body } : { status: 202 }) });
  await t.flush(); // the automatic page_view
  t.track('click', { product_id: 'p1' });
  t.track('purchase', { product_id: 'p2', price: 1e15 });
  t.track('search', { search_query: 'lamp' });
  await t.flush();
  assert.equal(calls.length, 3, 'the refused batch, then its valid events again');
  assert.deepEqual(calls[1].events.map((e) => e.event_type), ['click', 'purchase', 'search']);
  assert.deepEqual(calls[2].events.map((e) => e.event_type), ['click', 'search']);
  assert.deepEqual([t.stats.accepted, t.stats.failed], [3, 1]);
  assert.equal(t.stats.sent, t.stats.accepted + t.stats.failed);
  assert.ok(warnings.some((m) => m.includes('refused 1 event(s) with HTTP 400') && m.includes('2 valid')), warnings.join('\n'));
});

test('pagehide hands the queue to sendBeacon; falls back to fetch when it returns false', async () => {
  const a = load({ beacon: true });
  a.t.track('purchase', { product_id: 'p', price: 5, cart_value: 5 });
  a.w.dispatch('pagehide');
  assert.equal(a.calls.length, 0);
  assert.equal(a.beacons.length, 1);
  assert.equal(a.beacons[0].url, 'https://collector.example/v1/events?key=k1');
  assert.equal(a.beacons[0].blob.type, 'text/plain;charset=utf-8');
  const sent = JSON.parse(await a.beacons[0].blob.text());
  assert.deepEqual(sent.map((e) => e.event_type), ['page_view', 'purchase']);
  assert.ok(sent.every((e) => e.sent_at));
  assert.equal(a.t.stats.beaconed, 2);

  const b = load({ beacon: false });
  b.w.document.visibilityState = 'hidden';
  b.w.document.dispatch('visibilitychange');
  await until(() => b.t.stats.accepted === 1);
  assert.equal(b.calls[0].opts.keepalive, true);
});
