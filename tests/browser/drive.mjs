#!/usr/bin/env node
// End-to-end driver for the collector's browser tracker, in a real headless Chromium.
//
//   node drive.mjs --collector http://127.0.0.1:PORT --key KEY --page-port PAGEPORT [--user USERID]
//
// Serves shop.html on http://127.0.0.1:PAGEPORT (the origin the collector must allow), with the
// tracker snippet injected (script src = COLLECTOR/v1/tracker.js). Then, in the page: identify()
// through the pre-load stub (if --user), the automatic page_view, SPA navigation by pushState and
// popstate, clicks, a search and two add_to_carts; waits until the tracker's stats show every event
// accepted; buys, which tracks a purchase and leaves for a real page (/thanks), so the purchase goes
// out through navigator.sendBeacon on pagehide; and waits for the /thanks page_view to be accepted.
// Every fetch to the collector is watched on the wire (CDP) for the events it carried; beacons are
// not visible there, so a pagehide listener keeps the tracker's stats in sessionStorage instead.
//
// Prints ONE JSON line to stdout and exits 0:
//   {"origin", "user_id", "session_id", "events": {type: n}, "stats": {shop page, all accepted},
//    "thanks_stats": {...}, "exit": {"event_type": "purchase", "via": "beacon"|"fetch", "stats_at_pagehide"},
//    "fetch_requests", "user_agent", "elapsed_ms"}
// "events" counts the distinct events sent: 6 page_view, 2 click, 1 search, 2 add_to_cart, 1 purchase,
// all with this user_id and session_id. Those sent by fetch were all answered 2xx (the tracker's stats);
// the purchase normally goes by sendBeacon, whose response no page can see: check it at the collector.
// Any failure, or the overall deadline (--timeout), prints the reason to stderr and exits 1 (2 on usage).
// Options: --chromium PATH (env CHROMIUM, default /usr/bin/chromium), --flush-interval MS (200),
// --timeout SECONDS (60). Diagnostics go to stderr; DRIVE_DEBUG=1 logs every collector request.
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const started = Date.now();
const { values: opt } = parseArgs({
  options: {
    collector: { type: 'string' },
    key: { type: 'string' },
    'page-port': { type: 'string' },
    user: { type: 'string' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
    'flush-interval': { type: 'string', default: '200' },
    timeout: { type: 'string', default: '60' },
  },
});
const usage = 'usage: node drive.mjs --collector http://127.0.0.1:PORT --key KEY --page-port PAGEPORT [--user USERID]';
if (!opt.collector || !opt.key || !opt['page-port']) {
  console.error(usage);
  process.exit(2);
}
const collector = opt.collector.replace(/\/+$/, '');
const pagePort = Number(opt['page-port']);
const timeoutMs = Number(opt.timeout) * 1000;
const deadline = started + timeoutMs;
const debug = !!process.env.DRIVE_DEBUG;

// Expected events: the shop page's journey, then the purchase (beacon) and the /thanks page_view.
const EXPECTED_SHOP = { page_view: 5, click: 2, search: 1, add_to_cart: 2 };
const EXPECTED = { page_view: 6, click: 2, search: 1, add_to_cart: 2, purchase: 1 };
const SCHEMA_PROPS = new Set(['product_id', 'product_name', 'price', 'category', 'search_query', 'cart_value']);
const SERVER_FIELDS = ['user_agent', 'ip_address', 'device', 'location'];

let phase = 'starting';
let browser = null;
let server = null;
const pageLog = []; // console warnings/errors and page errors, shown on failure
const requests = []; // POSTs to the collector: {url, via, events, status, failure}

let failing = false;
async function fail(msg) {
  if (failing) return;
  failing = true;
  console.error(`drive.mjs: FAILED during "${phase}" after ${Date.now() - started} ms: ${msg}`);
  if (pageLog.length) console.error('page console:\n  ' + pageLog.slice(-30).join('\n  '));
  if (requests.length) {
    console.error('collector requests:\n  ' + requests.map(describe).join('\n  '));
  }
  const closing = browser ? browser.close().catch(() => {}) : Promise.resolve();
  await Promise.race([closing, new Promise((r) => setTimeout(r, 3000).unref())]);
  process.exit(1);
}
const watchdog = setTimeout(() => fail(`overall deadline of ${opt.timeout} s passed`), timeoutMs);
const left = () => Math.max(1, deadline - Date.now());
const check = (cond, msg) => { if (!cond) throw new Error(msg); };

// ---- the page server ----
const escAttr = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
const shopHtml = await readFile(new URL('./shop.html', import.meta.url), 'utf8');
const snippet = [
  '<script>',
  'window.activityTracker = window.activityTracker || function(){(window.activityTracker.q = window.activityTracker.q || []).push(arguments)};',
  opt.user != null ? `activityTracker('identify', ${JSON.stringify(opt.user).replace(/</g, '\\u003c')});` : '',
  '</script>',
  `<script async src="${escAttr(collector)}/v1/tracker.js" data-key="${escAttr(opt.key)}" data-flush-interval="${escAttr(opt['flush-interval'])}"></script>`,
].join('\n');
const page_html = shopHtml.replace('<!--ACTIVITY_TRACKER_SNIPPET-->', snippet);

server = http.createServer((req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  if (path === '/favicon.ico') return res.writeHead(204).end();
  if (req.method === 'GET' && (path === '/' || path === '/search' || path === '/thanks' || path.startsWith('/products/'))) {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(page_html);
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
  }
});
await new Promise((resolve, reject) => {
  server.once('error', (e) => reject(new Error(`cannot serve the page on 127.0.0.1:${pagePort}: ${e.message}`)));
  server.listen(pagePort, '127.0.0.1', resolve);
}).catch((e) => fail(e.message));
const origin = `http://127.0.0.1:${server.address().port}`;

// ---- what goes over the wire to the collector ----
function describe(r) {
  const types = (r.events || []).map((e) => e.event_type).join(',');
  return `${r.via} ${r.url.replace(/key=[^&]*/, 'key=…')} [${types}] -> ${r.status ?? r.failure ?? 'pending'}`;
}
function watchNetwork(context) {
  const byReq = new Map();
  context.on('request', (req) => {
    if (req.method() !== 'POST' || !req.url().startsWith(collector + '/v1/events')) return;
    let events = null;
    try {
      const body = JSON.parse(req.postData() || 'null');
      events = Array.isArray(body) ? body : [body];
    } catch (e) {
      events = [];
    }
    const rec = { url: req.url(), via: req.resourceType(), events, status: null, failure: null };
    byReq.set(req, rec);
    requests.push(rec);
    if (debug) console.error('request  ' + describe(rec));
  });
  context.on('requestfinished', async (req) => {
    const rec = byReq.get(req);
    if (!rec) return;
    const res = await req.response().catch(() => null);
    rec.status = res ? res.status() : 0;
    if (debug) console.error('finished ' + describe(rec));
  });
  context.on('requestfailed', (req) => {
    const rec = byReq.get(req);
    if (!rec) return;
    rec.failure = (req.failure() && req.failure().errorText) || 'failed';
    if (debug) console.error('failed   ' + describe(rec));
  });
}

// A refusal the tracker would only retry until it gives up: stop waiting at once.
let rejectFatal;
const fatal = new Promise((_, reject) => { rejectFatal = reject; });
fatal.catch(() => {});

async function trackerSettled(page, expectedQueued) {
  // Every event the page queued has been accepted (2xx); stops early if any failed.
  const handle = await Promise.race([fatal, page.waitForFunction((n) => {
    const t = window.activityTracker;
    const s = t && t.loaded && t.stats;
    if (!s) return false;
    return s.failed > 0 || (s.queued >= n && s.accepted === s.queued) ? { ...s } : false;
  }, expectedQueued, { timeout: left(), polling: 50 })]);
  const stats = await handle.jsonValue();
  check(stats.failed === 0, `the tracker reports failed events: ${JSON.stringify(stats)}`);
  check(stats.queued === expectedQueued, `expected ${expectedQueued} queued events, tracker stats ${JSON.stringify(stats)}`);
  return stats;
}

try {
  phase = 'launching chromium';
  browser = await chromium.launch({
    executablePath: opt.chromium,
    headless: true,
    timeout: left(),
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext();
  context.setDefaultTimeout(Math.min(20000, left()));
  watchNetwork(context);
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'warning' || m.type() === 'error') pageLog.push(`${m.type()}: ${m.text()}`);
    if (/blocked by CORS policy/.test(m.text())) {
      rejectFatal(new Error(`the browser refused the collector's response (is ${origin} in COLLECT_ALLOWED_ORIGINS?): ${m.text()}`));
    }
  });
  page.on('pageerror', (e) => pageLog.push(`pageerror: ${e.message}`));
  let trackerStatus = null;
  page.on('response', (r) => { if (r.url().startsWith(collector + '/v1/tracker.js')) trackerStatus = r.status(); });
  page.on('requestfailed', (r) => {
    if (r.url().startsWith(collector + '/v1/tracker.js')) pageLog.push(`tracker.js failed to load: ${r.failure()?.errorText}`);
  });

  phase = 'loading the shop';
  await page.goto(origin + '/', { waitUntil: 'load', timeout: left() });
  await page.waitForFunction(() => window.activityTracker && window.activityTracker.loaded, null, { timeout: Math.min(left(), 15000) })
    .catch(() => { throw new Error(`the tracker did not load from ${collector}/v1/tracker.js (HTTP ${trackerStatus})`); });
  const userId = await page.evaluate(() => window.activityTracker.userId());
  if (opt.user != null) check(userId === opt.user, `identify() through the stub did not take: user_id ${userId}`);
  else check(/^anon-[0-9a-f-]{36}$/.test(userId), `unexpected anonymous id ${userId}`);

  const route = (r) => page.waitForSelector(`body[data-route="${r}"]`, { timeout: left() });
  phase = 'viewing a product (pushState)';
  await page.click('#view-prod-001');
  await route('/products/prod-001');
  phase = 'adding to cart';
  await page.click('#add-to-cart');
  await page.waitForFunction(() => document.getElementById('cart-count').textContent === '1');
  phase = 'searching';
  await page.fill('#q', 'mouse');
  await page.click('#search-btn');
  await route('/search?q=mouse');
  phase = 'viewing a search result';
  await page.click('#view-prod-002');
  await route('/products/prod-002');
  await page.click('#add-to-cart');
  await page.waitForFunction(() => document.getElementById('cart-count').textContent === '2');
  phase = 'going back (popstate)';
  await page.evaluate(() => history.back());
  await route('/search?q=mouse');

  phase = 'waiting until the collector accepted every event of the shop page';
  const expectedShop = Object.values(EXPECTED_SHOP).reduce((a, b) => a + b, 0);
  const stats = await trackerSettled(page, expectedShop);
  const sessionId = await page.evaluate(() => window.activityTracker.sessionId());

  phase = 'buying (purchase sent on pagehide, then the /thanks page)';
  // Runs after the tracker's own pagehide listener (registered later): keeps its stats across the
  // navigation, in sessionStorage, to show what the tracker handed to sendBeacon.
  await page.evaluate(() => window.addEventListener('pagehide', () => {
    sessionStorage.setItem('drive.pagehide', JSON.stringify(window.activityTracker.stats));
  }));
  await Promise.all([page.waitForURL(/\/thanks\?/, { timeout: left() }), page.click('#buy')]);
  await page.waitForFunction(() => window.activityTracker && window.activityTracker.loaded, null, { timeout: left() });
  const thanksStats = await trackerSettled(page, 1);
  check(await page.evaluate(() => window.activityTracker.sessionId()) === sessionId, 'the /thanks page started a new session');
  const atPagehide = JSON.parse(await page.evaluate(() => sessionStorage.getItem('drive.pagehide')) || 'null');
  check(atPagehide && atPagehide.queued === expectedShop + 1 && atPagehide.failed === 0,
    `the shop page's stats at pagehide: ${JSON.stringify(atPagehide)}`);
  const userAgent = await page.evaluate(() => navigator.userAgent);

  phase = 'checking the events on the wire';
  // Every fetch the tracker made (a retried batch appears more than once); all of them were
  // accepted, as the stats showed. Beacons are invisible to CDP: the purchase is counted from the
  // stats at pagehide when it went that way (it goes by fetch if the flush timer won the race).
  const seen = new Map();
  for (const r of requests) for (const e of r.events) if (!seen.has(e.event_id)) seen.set(e.event_id, e);
  const wire = [...seen.values()].sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp));
  const counts = { page_view: 0, click: 0, search: 0, add_to_cart: 0, purchase: 0 };
  for (const e of wire) {
    check(e.event_type in counts, `unexpected event_type ${e.event_type}`);
    counts[e.event_type]++;
    check(typeof e.event_id === 'string' && /^[0-9a-f-]{36}$/.test(e.event_id), `bad event_id ${e.event_id}`);
    check(e.user_id === userId, `event ${e.event_id} has user_id ${e.user_id}, expected ${userId}`);
    check(e.session_id === sessionId, `event ${e.event_id} has session_id ${e.session_id}, expected ${sessionId}`);
    check(!Number.isNaN(Date.parse(e.timestamp)) && !Number.isNaN(Date.parse(e.sent_at)), `bad timestamp/sent_at in ${JSON.stringify(e)}`);
    check(typeof e.page_url === 'string' && e.page_url.startsWith(origin + '/'), `bad page_url ${e.page_url}`);
    for (const f of SERVER_FIELDS) check(!(f in e), `the tracker sent ${f}, which the server sets`);
    for (const k of Object.keys(e.properties || {})) check(SCHEMA_PROPS.has(k), `property ${k} is not in the schema`);
  }
  let via;
  if (counts.purchase === 1) via = 'fetch';
  else if (counts.purchase === 0 && atPagehide.beaconed === 1) { via = 'beacon'; counts.purchase = 1; }
  else throw new Error(`the purchase was neither fetched nor beaconed: ${counts.purchase} on the wire, stats at pagehide ${JSON.stringify(atPagehide)}`);
  check(JSON.stringify(counts) === JSON.stringify(EXPECTED), `sent events ${JSON.stringify(counts)}, expected ${JSON.stringify(EXPECTED)}`);
  const views = wire.filter((e) => e.event_type === 'page_view').map((e) => [e.page_url.slice(origin.length), e.referrer && e.referrer.slice(origin.length)]);
  const expectViews = [['/', null], ['/products/prod-001', '/'], ['/search?q=mouse', '/products/prod-001'],
    ['/products/prod-002', '/search?q=mouse'], ['/search?q=mouse', '/products/prod-002'], ['/thanks?items=2', '/search?q=mouse']];
  check(JSON.stringify(views) === JSON.stringify(expectViews), `page_views (url, referrer) ${JSON.stringify(views)}, expected ${JSON.stringify(expectViews)}`);
  const cart = wire.filter((e) => e.event_type === 'add_to_cart').map((e) => e.properties);
  check(cart[1] && cart[1].product_id === 'prod-002' && cart[1].cart_value === 1024.49 && cart[1].category === 'electronics',
    `add_to_cart properties ${JSON.stringify(cart)}`);
  const search = wire.find((e) => e.event_type === 'search');
  check(search.properties && search.properties.search_query === 'mouse', `search properties ${JSON.stringify(search.properties)}`);
  const warnings = pageLog.filter((l) => l.includes('activityTracker') || l.startsWith('pageerror'));
  check(!warnings.length, `the page logged: ${warnings.join(' | ')}`);

  clearTimeout(watchdog);
  const elapsed = Date.now() - started;
  process.stdout.write(JSON.stringify({
    origin,
    user_id: userId,
    session_id: sessionId,
    events: counts,
    stats,
    thanks_stats: thanksStats,
    exit: { event_type: 'purchase', via, stats_at_pagehide: atPagehide },
    fetch_requests: requests.length,
    user_agent: userAgent,
    elapsed_ms: elapsed,
  }) + '\n');
  await browser.close();
  server.close();
  process.exit(0);
} catch (e) {
  await fail(e && e.message ? e.message.split('\n')[0] : String(e));
}
