// Drives the browser's own WebSocket for the e2e tests (tests/e2e/test_browser_websocket.py), through
// page.evaluate: every call takes and returns plain JSON values, sockets are named by small integer ids.

const sockets = new Map();
let nextId = 1;

function record(id) {
  const rec = sockets.get(id);
  if (!rec) throw new Error(`no socket ${id}`);
  return rec;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function closeDetails(ev) {
  return { code: ev.code, reason: ev.reason, wasClean: ev.wasClean };
}

export const wsProbe = {
  /** The endpoint URL on the page's own origin: ws:// from http:, wss:// from https:. */
  url(path = "/ws") {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${path}`;
  },

  /** Opens a socket and waits until it is open; resolves to its id (rejects with the close details if not). */
  open(path = "/ws", timeoutMs = 5000) {
    const id = nextId++;
    const ws = new WebSocket(this.url(path));
    ws.binaryType = "arraybuffer";
    const rec = { ws, messages: [], waiters: [], errors: 0, closed: null, closeWaiters: [] };
    sockets.set(id, rec);
    ws.onmessage = (ev) => {
      const data = typeof ev.data === "string" ? ev.data : { binary: ev.data.byteLength };
      const waiter = rec.waiters.shift();
      if (waiter) waiter(data);
      else rec.messages.push(data);
    };
    ws.onerror = () => {
      rec.errors += 1;
    };
    ws.onclose = (ev) => {
      rec.closed = closeDetails(ev);
      for (const waiter of rec.closeWaiters.splice(0)) waiter(rec.closed);
    };
    const opened = new Promise((resolve, reject) => {
      ws.addEventListener("open", () => resolve(id), { once: true });
      ws.addEventListener("close", (ev) => reject(new Error(`closed before open: ${JSON.stringify(closeDetails(ev))}`)), {
        once: true,
      });
    });
    return withTimeout(opened, timeoutMs, `socket ${id} to open`);
  },

  /** Sends a text message; returns its length in UTF-8 bytes. */
  send(id, text) {
    record(id).ws.send(text);
    return new TextEncoder().encode(text).length;
  },

  /** Sends a binary message of `length` bytes (0, 1, 2, ... mod 256). */
  sendBinary(id, length) {
    const bytes = new Uint8Array(length);
    for (let i = 0; i < length; i++) bytes[i] = i & 0xff;
    record(id).ws.send(bytes);
  },

  /** The next message received (a string, or {binary: length}), waiting up to timeoutMs for it. */
  next(id, timeoutMs = 5000) {
    const rec = record(id);
    if (rec.messages.length) return Promise.resolve(rec.messages.shift());
    return withTimeout(new Promise((resolve) => rec.waiters.push(resolve)), timeoutMs, `a message on socket ${id}`);
  },

  /** Messages received and not yet taken by next(). */
  pending(id) {
    return record(id).messages.slice();
  },

  /** The close event's {code, reason, wasClean}, waiting up to timeoutMs for it. */
  closed(id, timeoutMs = 5000) {
    const rec = record(id);
    if (rec.closed) return Promise.resolve(rec.closed);
    return withTimeout(new Promise((resolve) => rec.closeWaiters.push(resolve)), timeoutMs, `socket ${id} to close`);
  },

  /** Starts the closing handshake from the page: ws.close(code, reason). */
  close(id, code, reason) {
    const { ws } = record(id);
    if (code === undefined) ws.close();
    else ws.close(code, reason);
  },

  /** readyState, bufferedAmount, error events seen so far and close details (null while open). */
  state(id) {
    const rec = record(id);
    return {
      readyState: rec.ws.readyState,
      bufferedAmount: rec.ws.bufferedAmount,
      errors: rec.errors,
      closed: rec.closed,
    };
  },
};

window.wsProbe = wsProbe;
document.documentElement.dataset.ready = "1";
