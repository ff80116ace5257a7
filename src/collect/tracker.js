/* activity-tracker browser tracker, served by `activity-tracker collect` at GET /v1/tracker.js.
 *
 *   <script>
 *     window.activityTracker = window.activityTracker || function(){(window.activityTracker.q = window.activityTracker.q || []).push(arguments)};
 *   </script>
 *   <script async src="https://COLLECTOR/v1/tracker.js" data-key="WRITE_KEY"></script>
 *
 *   activityTracker('track', 'add_to_cart', {product_id: 'p1', price: 9.5});
 *   activityTracker('identify', 'user-42');
 *   // once loaded also: activityTracker.track(type, props), .identify(id), .page(), .flush() (a promise),
 *   // .reset() (a new anonymous id and session, e.g. on logout), .userId(), .sessionId()
 *
 * Optional attributes: data-session-timeout (minutes, 30), data-auto-pageview ("false" disables),
 * data-flush-interval (ms, 1000), data-batch-size (10), data-endpoint (default: where this script came from).
 * No dependencies; the server adds user_agent, ip_address, device and location.
 *
 * activityTracker.stats counts events: queued (tracked), sent (posted; a retried event counts per attempt),
 * accepted (in 2xx responses), failed (refused, given up on, or pushed out of a full queue),
 * retried (put back after a network error, 429 or 5xx), beaconed (handed to sendBeacon: no response to read).
 */
(function (w, d) {
  'use strict';
  var prev = w.activityTracker;
  if (prev && prev.loaded) return; // loaded twice

  var TYPES = ['page_view', 'click', 'search', 'add_to_cart', 'purchase'];
  var STRING_PROPS = ['product_id', 'product_name', 'category', 'search_query'];
  var NUMBER_PROPS = ['price', 'cart_value'];
  var MAX_QUEUE = 1000; // events kept while the collector is unreachable; the oldest go first
  var MAX_ATTEMPTS = 5; // tries per batch on network errors, 429 and 5xx
  var MAX_BATCH = 500; // the collector's default COLLECT_MAX_BATCH
  var REQUEST_TIMEOUT = 15000; // ms before a request counts as a network error
  var KEEPALIVE_BYTES = 60000; // browsers cap keepalive fetch and sendBeacon bodies at 64 KiB
  var PREFIX = 'activityTracker.';

  var script = d.currentScript || d.querySelector('script[src*="/v1/tracker.js"]');
  var data = (script && script.dataset) || {};
  var src = (script && script.src) || '';
  var endpoint = (data.endpoint || src.replace(/\/v1\/tracker\.js([?#].*)?$/, '')).replace(/\/+$/, '');
  var key = data.key || '';
  var num = function (v, dflt, min) {
    var n = Number(v);
    return v != null && v !== '' && isFinite(n) && n >= min ? n : dflt;
  };
  var sessionTimeout = num(data.sessionTimeout, 30, Number.MIN_VALUE) * 60000;
  var flushInterval = num(data.flushInterval, 1000, 0);
  var batchSize = Math.min(Math.floor(num(data.batchSize, 10, 1)), MAX_BATCH);
  var autoPageview = data.autoPageview !== 'false';
  var eventsUrl = endpoint + '/v1/events?key=' + encodeURIComponent(key);

  var warned = {};
  var warnOnce = function (what, msg) {
    if (warned[what]) return;
    warned[what] = true;
    if (w.console && console.warn) console.warn('activityTracker: ' + msg);
  };

  // ---- storage: localStorage, or memory when it is unavailable (privacy modes, sandboxed frames) ----
  var memory = {};
  var ls = null;
  try {
    ls = w.localStorage;
    ls.setItem(PREFIX + 'probe', '1');
    ls.removeItem(PREFIX + 'probe');
  } catch (e) {
    ls = null;
  }
  var store = {
    get: function (k) {
      try {
        if (ls) return ls.getItem(PREFIX + k);
      } catch (e) { /* fall through to memory */ }
      return Object.prototype.hasOwnProperty.call(memory, k) ? memory[k] : null;
    },
    set: function (k, v) {
      memory[k] = String(v);
      try {
        if (ls) ls.setItem(PREFIX + k, String(v));
      } catch (e) { /* quota or disabled: memory keeps it for this page */ }
    },
    del: function (k) {
      delete memory[k];
      try {
        if (ls) ls.removeItem(PREFIX + k);
      } catch (e) { /* ignore */ }
    },
  };

  var uuid = function () {
    var c = w.crypto;
    if (c && typeof c.randomUUID === 'function') return c.randomUUID();
    var b = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (var i = 0; i < 16; i++) b[i] = (Math.random() * 256) | 0;
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join('');
    return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
  };
  var bytes = function (s) {
    return typeof TextEncoder === 'function' ? new TextEncoder().encode(s).length : s.length * 3;
  };

  // ---- identity and session ----
  var anonymousId = function () {
    var id = store.get('anonymous_id');
    if (!id) store.set('anonymous_id', (id = 'anon-' + uuid()));
    return id;
  };
  var userId = function () { return store.get('user_id') || anonymousId(); };
  var sessionId = function () {
    var now = Date.now();
    var id = store.get('session_id');
    var last = Number(store.get('last_activity'));
    if (!id || !(now - last <= sessionTimeout)) store.set('session_id', (id = uuid()));
    store.set('last_activity', now);
    return id;
  };

  // ---- events ----
  var lastUrl = w.location.href;
  var pageReferrer = d.referrer || null; // the referrer of the current (virtual) page
  var queue = [];
  var stats = { queued: 0, sent: 0, accepted: 0, failed: 0, retried: 0, beaconed: 0 };

  var cleanProps = function (p) {
    if (!p || typeof p !== 'object') return null;
    var out = {};
    var any = false;
    STRING_PROPS.forEach(function (k) {
      var v = p[k];
      if (typeof v === 'number' && isFinite(v)) v = String(v);
      if (typeof v === 'string') { out[k] = v; any = true; }
      else if (v != null) warnOnce('prop:' + k, 'property ' + k + ' must be a string; dropped');
    });
    NUMBER_PROPS.forEach(function (k) {
      var v = p[k];
      if (typeof v === 'string' && v.trim() !== '') v = Number(v);
      if (typeof v === 'number' && isFinite(v) && v >= 0) { out[k] = v; any = true; }
      else if (v != null) warnOnce('prop:' + k, 'property ' + k + ' must be a number >= 0; dropped');
    });
    return any ? out : null;
  };

  var track = function (type, props) {
    if (!key) return warnOnce('key', 'no data-key on the script tag; events are not sent');
    // One invalid event makes the collector refuse its whole batch, so unknown types stop here.
    if (TYPES.indexOf(type) < 0) return warnOnce('type:' + type, 'unknown event type ' + JSON.stringify(type) + ' (expected one of ' + TYPES.join(', ') + ')');
    var ev = {
      event_id: uuid(),
      timestamp: new Date().toISOString(),
      user_id: userId(),
      session_id: sessionId(),
      event_type: type,
      page_url: w.location.href,
      referrer: pageReferrer,
    };
    var p = cleanProps(props);
    if (p) ev.properties = p;
    enqueue(ev);
  };

  var page = function () { track('page_view'); };

  var identify = function (id) {
    if (typeof id === 'number' && isFinite(id)) id = String(id);
    if (typeof id !== 'string' || !id || bytes(id) > 256) {
      return warnOnce('identify', 'identify() needs a non-empty user id of at most 256 bytes');
    }
    store.set('user_id', id);
  };

  var reset = function () { // e.g. on logout: a new anonymous visitor and session
    store.del('user_id');
    store.del('session_id');
    store.set('anonymous_id', 'anon-' + uuid());
  };

  // ---- batching and delivery ----
  var timer = 0;
  var retryAt = 0;
  var attempts = 0;
  var draining = null;

  var schedule = function (ms) {
    clearTimeout(timer);
    timer = setTimeout(function () { timer = 0; flush(); }, Math.max(0, ms));
  };

  var trim = function () {
    if (queue.length > MAX_QUEUE) {
      var n = queue.length - MAX_QUEUE;
      queue.splice(0, n);
      stats.failed += n;
      warnOnce('full', 'queue full (' + MAX_QUEUE + ' events); dropping the oldest');
    }
  };

  var enqueue = function (ev) {
    queue.push(ev);
    stats.queued++;
    trim();
    if (Date.now() < retryAt) return; // backing off: the retry timer sends it
    if (queue.length >= batchSize) flush();
    else if (!timer) schedule(flushInterval);
  };

  var stamp = function (batch) {
    var now = new Date().toISOString();
    batch.forEach(function (e) { e.sent_at = now; });
    return JSON.stringify(batch);
  };

  var retryAfterMs = function (res) {
    var h = res && res.headers && res.headers.get('Retry-After'); // readable if the collector exposes it
    if (!h) return 0;
    var s = Number(h);
    if (isFinite(s)) return s * 1000;
    var t = Date.parse(h);
    return isFinite(t) ? t - Date.now() : 0;
  };

  // A 400 refuses the whole batch and lists the invalid events by index: the others are worth sending
  // again (a single bad purchase must not take the page views of its batch with it).
  var validOnes = function (batch, text) {
    var bad = {};
    try {
      var rejected = JSON.parse(text).rejected;
      if (!Array.isArray(rejected) || !rejected.length) return [];
      for (var i = 0; i < rejected.length; i++) bad[rejected[i].index] = true;
    } catch (e) { return []; }
    return batch.filter(function (ev, i) { return !bad[i]; });
  };

  // POST one batch; resolves to 'ok', 'retry' (+ delay) or 'drop' (+ the events worth sending again).
  var post = function (batch) {
    var body = stamp(batch);
    stats.sent += batch.length;
    var ctl = typeof AbortController === 'function' ? new AbortController() : null;
    var timeout = ctl ? setTimeout(function () { ctl.abort(); }, REQUEST_TIMEOUT) : 0;
    return fetch(eventsUrl, {
      method: 'POST',
      body: body,
      headers: { 'Content-Type': 'text/plain;charset=UTF-8' }, // a "simple" request: no CORS preflight
      credentials: 'omit',
      keepalive: bytes(body) <= KEEPALIVE_BYTES,
      signal: ctl ? ctl.signal : undefined,
    }).then(function (res) {
      // Read the small JSON body, so the request is complete (and a hung one is aborted).
      return res.text().then(function (text) { return [res, text]; }, function () { return [res, '']; });
    }).then(function (answer) {
      clearTimeout(timeout);
      var res = answer[0];
      var s = res.status;
      if (s >= 200 && s < 300) {
        stats.accepted += batch.length;
        return { kind: 'ok' };
      }
      if (s === 408 || s === 429 || s >= 500) return { kind: 'retry', wait: retryAfterMs(res), status: s };
      var keep = s === 400 ? validOnes(batch, answer[1]) : [];
      warnOnce('http:' + s, 'the collector refused ' + (batch.length - keep.length) + ' event(s) with HTTP ' + s +
        '; dropped' + (keep.length ? ' (the ' + keep.length + ' valid one(s) of the batch are sent again)' : ''));
      return { kind: 'drop', keep: keep };
    }, function () {
      clearTimeout(timeout);
      return { kind: 'retry', wait: 0, status: 'network error' };
    });
  };

  var drain = function () {
    clearTimeout(timer);
    timer = 0;
    if (!queue.length) return Promise.resolve();
    var wait = retryAt - Date.now();
    if (wait > 0) { // backing off (timers may fire a little early): keep the retry scheduled
      schedule(wait + 5);
      return Promise.resolve();
    }
    var batch = queue.splice(0, batchSize); // in flight: not in the queue, so a pagehide beacon won't resend it
    return post(batch).then(function (r) {
      if (r.kind === 'retry') {
        attempts++;
        if (attempts >= MAX_ATTEMPTS) {
          stats.failed += batch.length;
          attempts = 0;
          warnOnce('giveup', 'gave up on ' + batch.length + ' event(s) after ' + MAX_ATTEMPTS + ' attempts (last: ' + r.status + ')');
        } else {
          stats.retried += batch.length;
          var backoff = Math.min(30000, 1000 * Math.pow(2, attempts - 1)) * (0.5 + Math.random() / 2);
          var wait = Math.min(Math.max(r.wait, backoff), 300000);
          retryAt = Date.now() + wait;
          Array.prototype.unshift.apply(queue, batch);
          trim();
          schedule(wait);
          return;
        }
      } else {
        attempts = 0;
        if (r.kind === 'drop') {
          var keep = r.keep || [];
          stats.failed += batch.length - keep.length;
          stats.sent -= keep.length; // counted again when they go
          Array.prototype.unshift.apply(queue, keep);
        }
      }
      retryAt = 0;
      return drain(); // the rest of the queue, without waiting for the timer
    });
  };

  // Sends everything queued; the promise settles once the queue is empty or a retry is scheduled.
  var flush = function () {
    if (!draining) {
      draining = drain().then(function () { draining = null; }, function () { draining = null; });
    }
    return draining;
  };

  // The page is going away (or into the background): hand everything to sendBeacon, which outlives
  // the page; fall back to a keepalive fetch. In-flight fetches are keepalive already.
  var flushOnHide = function () {
    clearTimeout(timer);
    timer = 0;
    while (queue.length) {
      var chunk = [];
      var size = 2;
      while (queue.length && chunk.length < MAX_BATCH) {
        var n = bytes(JSON.stringify(queue[0])) + 60; // + room for sent_at
        if (chunk.length && size + n > KEEPALIVE_BYTES) break;
        chunk.push(queue.shift());
        size += n + 1;
      }
      var ok = false;
      try {
        ok = typeof navigator.sendBeacon === 'function' &&
          navigator.sendBeacon(eventsUrl, new Blob([stamp(chunk)], { type: 'text/plain;charset=UTF-8' }));
      } catch (e) { ok = false; }
      if (ok) {
        stats.sent += chunk.length;
        stats.beaconed += chunk.length;
      } else {
        post(chunk).then(function (r) { // the page may live on (hidden tab): retry later as usual
          if (r.kind !== 'retry') return;
          Array.prototype.unshift.apply(queue, this);
          trim();
          schedule(1000);
        }.bind(chunk));
      }
    }
    retryAt = 0;
    attempts = 0;
  };

  // ---- page views on load and on history navigation (single-page apps) ----
  var navigated = function () {
    var url = w.location.href;
    if (url === lastUrl) return;
    pageReferrer = lastUrl;
    lastUrl = url;
    if (autoPageview) page();
  };
  ['pushState', 'replaceState'].forEach(function (name) {
    var orig = w.history && w.history[name];
    if (typeof orig !== 'function') return;
    w.history[name] = function () {
      var r = orig.apply(this, arguments);
      navigated();
      return r;
    };
  });
  w.addEventListener('popstate', navigated);
  w.addEventListener('pagehide', flushOnHide);
  d.addEventListener('visibilitychange', function () { if (d.visibilityState === 'hidden') flushOnHide(); });
  w.addEventListener('online', function () { retryAt = 0; flush(); });

  // ---- the public function, replacing the stub ----
  var api = function (cmd) {
    var args = Array.prototype.slice.call(arguments, 1);
    var fn = typeof cmd === 'string' && commands.hasOwnProperty(cmd) ? commands[cmd] : null;
    if (!fn) return warnOnce('cmd:' + cmd, 'unknown command ' + JSON.stringify(cmd));
    return fn.apply(null, args);
  };
  var commands = { track: track, identify: identify, page: page, flush: flush, reset: reset };
  Object.keys(commands).forEach(function (k) { api[k] = commands[k]; });
  api.stats = stats;
  api.loaded = true;
  api.userId = userId;
  api.sessionId = function () { return store.get('session_id'); };
  w.activityTracker = api;

  // Replay calls made before the script loaded. The automatic page_view goes before the first
  // queued track() (so it is the first event) but after any identify() that preceded it.
  var viewed = !autoPageview;
  var firstView = function () { if (!viewed) { viewed = true; page(); } };
  var pending = (prev && prev.q) || [];
  for (var i = 0; i < pending.length; i++) {
    if (pending[i][0] === 'track') firstView();
    try { api.apply(null, pending[i]); } catch (e) { warnOnce('replay', 'queued call failed: ' + e); }
  }
  firstView();
})(window, document);
