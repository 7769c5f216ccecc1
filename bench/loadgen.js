#!/usr/bin/env node
// Load generator for chat_service's benchmark (driven by bench/run.py).
//
// One Node process, one event loop: `ws` handles tens of thousands of frames
// per second per core with little CPU, so the server under test, pinned to
// the other core, stays the bottleneck. The process measures its own CPU
// over the measurement window and reports it, so a run where the load
// generator saturated can be seen and discarded.
//
// Usage: node loadgen.js '<json scenario>'. Output: one JSON object per line
// on stdout: {"event":"ready"} once every client has its welcome frame,
// {"event":"measure_start"} and {"event":"measure_end"} around the window,
// then {"event":"result",...}. In "idle" mode it holds the connections after
// "ready" until its standard input closes.
//
// Scenario fields:
//   mode: "fanout" (one publisher, at most `in_flight` messages not yet
//         received by every client), "rate" (one publisher at `rate` msg/s),
//         "rooms" (every client sends `rate` msg/s), "idle" (connect only),
//         "storm" (every client connects at once; how long until all have
//         their `ready_frame`, how many were cut off, and the presence diffs
//         each received over the `duration` that follows)
//   urls: base URLs such as "ws://127.0.0.1:8080/api/chat-api/ws"; client i
//         of a room connects to urls[i % urls.length]
//   rooms, clients_per_room, batch, in_flight, rate, warmup, duration (s),
//   deflate (clients offer permessage-deflate, as every browser does: `ws`'s
//   default offer, `client_max_window_bits`; else they offer nothing),
//   drain (s: how long the rooms/rate modes keep listening after the window,
//   so that the latencies of messages sent at its end are counted too),
//   connect_concurrency, connect_timeout (s),
//   ready_frame (storm mode: "subscribed", chat_service's answer once the
//   room is joined, or "welcome", the first frame, for servers that
//   subscribe before they say welcome)
"use strict";

const WebSocket = require("ws");
const { performance } = require("perf_hooks");

// A message not received by every client this long after it was sent no
// longer counts as in flight (fanout mode): a client that was dropped must
// not stall the publisher for the rest of the run. Far above the time a
// healthy server takes: 50 messages in flight to 500 clients at 5,000
// deliveries/s take 5 s to arrive.
const IN_FLIGHT_EXPIRY_MS = 30000;

const CHAT_PREFIX = '{"type":"chat"';
const BODY_KEY = '"body":"';

const scenario = JSON.parse(process.argv[2]);

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function fail(message) {
  emit({ event: "error", message });
  process.exit(1);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- measurement state -----------------------------------------------------

let measuring = false;
let delivered = 0; // chat frames received inside the window
let sentInWindow = 0; // chat messages sent inside the window
let offeredDeliveries = 0; // sentInWindow x the sender's room size
let latencies = new Float64Array(1 << 16);
let latencyCount = 0;
const closes = {}; // close code -> count, for closes we did not ask for
let errorFrames = 0;
let stopping = false;

function recordLatency(ms) {
  if (latencyCount === latencies.length) {
    const grown = new Float64Array(latencies.length * 2);
    grown.set(latencies);
    latencies = grown;
  }
  latencies[latencyCount++] = ms;
}

// fanout mode: seq -> {remaining, sentAt}
const inFlight = new Map();
let expired = 0;
let onAllReceived = null;

// --- clients ---------------------------------------------------------------

class Client {
  constructor(url, room, index) {
    this.url = `${url}/${room}?user_id=u${index}${scenario.batch ? "&batch=1" : ""}`;
    this.room = room;
    this.roomSize = 0;
    this.ws = null;
    this.onSubscribed = null; // storm mode: called at the path room's `subscribed`
    this.presenceDiffs = 0;
    this.lastUsers = null; // the `users` of the last presence_diff
  }

  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, { perMessageDeflate: Boolean(scenario.deflate) });
      this.ws = ws;
      const timer = setTimeout(
        () => reject(new Error(`no welcome within ${scenario.connect_timeout}s: ${this.url}`)),
        scenario.connect_timeout * 1000,
      );
      let welcomed = false;
      ws.on("message", (data) => {
        const text = data.toString();
        if (!welcomed) {
          welcomed = true;
          clearTimeout(timer);
          resolve();
        }
        this.onFrame(text);
      });
      ws.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      ws.on("close", (code) => {
        if (!stopping) closes[code] = (closes[code] || 0) + 1;
        if (!welcomed) reject(new Error(`closed ${code} before welcome`));
      });
    });
  }

  onFrame(text) {
    if (scenario.batch && text.indexOf("\n") !== -1) {
      for (const line of text.split("\n")) this.onMessage(line);
    } else {
      this.onMessage(text);
    }
  }

  onMessage(line) {
    // Fast path for the frame this load is made of: both servers write
    // compact JSON with "type" first, and a body here holds no quote or
    // backslash. Anything else is parsed in full.
    if (line.startsWith(CHAT_PREFIX)) {
      const start = line.indexOf(BODY_KEY);
      if (start !== -1) {
        const end = line.indexOf('"', start + BODY_KEY.length);
        this.onChat(line.slice(start + BODY_KEY.length, end));
        return;
      }
    }
    const frame = JSON.parse(line);
    switch (frame.type) {
      case "chat":
        this.onChat(frame.body);
        break;
      case "ping":
        this.ws.send('{"type":"pong"}');
        break;
      case "error":
        errorFrames++;
        break;
      case "subscribed":
        if (this.onSubscribed !== null) this.onSubscribed();
        break;
      case "presence_diff":
        this.presenceDiffs++;
        this.lastUsers = frame.users;
        break;
      default: // welcome, pong
    }
  }

  onChat(body) {
    // body = "<seq>:<send time in ms on this process's monotonic clock>"
    const colon = body.indexOf(":");
    const sentAt = +body.slice(colon + 1);
    if (measuring) {
      delivered++;
      recordLatency(performance.now() - sentAt);
    }
    if (onAllReceived !== null) {
      const seq = +body.slice(0, colon);
      const entry = inFlight.get(seq);
      if (entry !== undefined && --entry.remaining === 0) {
        inFlight.delete(seq);
        onAllReceived();
      }
    }
  }

  sendChat(seq) {
    const now = performance.now();
    this.ws.send(`{"type":"chat","body":"${seq}:${now}"}`);
    if (measuring) {
      sentInWindow++;
      offeredDeliveries += this.roomSize;
    }
    return now;
  }
}

async function connectAll(clients) {
  let next = 0;
  async function worker() {
    while (next < clients.length) {
      await clients[next++].connect();
    }
  }
  const workers = [];
  for (let i = 0; i < Math.min(scenario.connect_concurrency, clients.length); i++) {
    workers.push(worker());
  }
  await Promise.all(workers);
}

// --- load patterns ---------------------------------------------------------

let seq = 0;

function startFanout(publisher) {
  // Closed loop: a message leaves the window of `in_flight` once every
  // client of the room has it, and then the next one is sent.
  const sendOne = () => {
    const s = seq++;
    inFlight.set(s, { remaining: publisher.roomSize, sentAt: publisher.sendChat(s) });
  };
  onAllReceived = () => {
    if (!stopping) sendOne();
  };
  const expiry = setInterval(() => {
    const limit = performance.now() - IN_FLIGHT_EXPIRY_MS;
    for (const [s, entry] of inFlight) {
      if (entry.sentAt < limit) {
        inFlight.delete(s);
        expired++;
        sendOne();
      }
    }
  }, 500);
  for (let i = 0; i < scenario.in_flight; i++) sendOne();
  return () => clearInterval(expiry);
}

function startOpenLoop(publishers, rate) {
  // Open loop: each publisher sends `rate` msg/s on its own schedule,
  // whatever the server does, with phases spread over one period.
  const period = 1000 / rate;
  const timers = publishers.map((client, i) => {
    let due = performance.now() + (period * i) / publishers.length;
    let timer = null;
    const tick = () => {
      if (stopping) return;
      const now = performance.now();
      while (due <= now) {
        client.sendChat(seq++);
        due += period;
      }
      timer = setTimeout(tick, due - now);
    };
    timer = setTimeout(tick, due - performance.now());
    return () => clearTimeout(timer);
  });
  return () => timers.forEach((stop) => stop());
}

// --- main ------------------------------------------------------------------

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

async function main() {
  const clients = [];
  const rooms = [];
  for (let r = 0; r < scenario.rooms; r++) {
    const room = scenario.rooms === 1 ? "bench" : `bench-${r}`;
    const members = [];
    for (let i = 0; i < scenario.clients_per_room; i++) {
      const url = scenario.urls[i % scenario.urls.length];
      const client = new Client(url, room, r * scenario.clients_per_room + i);
      client.roomSize = scenario.clients_per_room;
      members.push(client);
      clients.push(client);
    }
    rooms.push(members);
  }
  if (scenario.mode === "storm") {
    await storm(clients);
    return;
  }
  const connectStart = performance.now();
  try {
    await connectAll(clients);
  } catch (err) {
    fail(`connect failed: ${err.message}`);
  }
  const connectSeconds = (performance.now() - connectStart) / 1000;
  emit({ event: "ready", clients: clients.length, connect_seconds: connectSeconds });

  if (scenario.mode === "idle") {
    process.stdin.resume();
    await new Promise((resolve) => process.stdin.on("end", resolve));
    stopping = true;
    emit({
      event: "result",
      clients: clients.length,
      connect_seconds: connectSeconds,
      error_frames: errorFrames,
      unexpected_closes: closes,
    });
    process.exit(0);
  }

  let stopLoad;
  if (scenario.mode === "fanout") {
    stopLoad = startFanout(rooms[0][0]);
  } else if (scenario.mode === "rate") {
    stopLoad = startOpenLoop([rooms[0][0]], scenario.rate);
  } else if (scenario.mode === "rooms") {
    stopLoad = startOpenLoop(clients, scenario.rate);
  } else {
    fail(`unknown mode ${scenario.mode}`);
  }

  await sleep(scenario.warmup * 1000);
  const cpuStart = process.cpuUsage();
  const t0 = performance.now();
  measuring = true;
  emit({ event: "measure_start" });
  await sleep(scenario.duration * 1000);
  const elapsed = (performance.now() - t0) / 1000;
  const loadgenCpu = cpuShare(cpuStart, t0);
  emit({ event: "measure_end" });
  const windowDelivered = delivered;
  const windowOffered = offeredDeliveries;
  if (scenario.mode !== "fanout") {
    // Count the late arrivals of messages sent in the window (latency only).
    stopLoad();
    await sleep(scenario.drain * 1000);
  }
  measuring = false;
  stopping = true;
  stopLoad();

  const sorted = latencies.slice(0, latencyCount).sort();
  emit({
    event: "result",
    clients: clients.length,
    connect_seconds: connectSeconds,
    elapsed,
    deliveries: windowDelivered,
    deliveries_per_s: windowDelivered / elapsed,
    sent: sentInWindow,
    offered_deliveries_per_s: windowOffered / elapsed,
    sustained_fraction: windowOffered > 0 ? windowDelivered / windowOffered : null,
    latency_ms: {
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      max: percentile(sorted, 1),
      count: latencyCount,
    },
    loadgen_cpu: loadgenCpu,
    expired_in_flight: expired,
    error_frames: errorFrames,
    unexpected_closes: closes,
  });
  for (const client of clients) client.ws.terminate();
  process.exit(0);
}

// This process's CPU since `cpuStart` (process.cpuUsage()), as a share of
// one core over the wall time since `t0` (performance.now()).
function cpuShare(cpuStart, t0) {
  const cpu = process.cpuUsage(cpuStart);
  return (cpu.user + cpu.system) / 1e3 / (performance.now() - t0);
}

// storm mode: every client connects at the same moment (a deploy's reconnect).
async function storm(clients) {
  // The window is the storm itself: the server's CPU (and a profile) over it.
  emit({ event: "measure_start" });
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  const outcomes = await Promise.allSettled(
    clients.map(
      (client) =>
        new Promise((resolve, reject) => {
          client.onSubscribed = () => resolve(performance.now());
          client.connect().then(() => {
            if (scenario.ready_frame === "welcome") resolve(performance.now());
          }, reject);
        }),
    ),
  );
  const served = outcomes.filter((o) => o.status === "fulfilled").map((o) => o.value);
  const seconds = (Math.max(start, ...served) - start) / 1000;
  const loadgenCpu = cpuShare(cpuStart, start);
  emit({ event: "measure_end" });
  emit({ event: "ready", clients: served.length, connect_seconds: seconds });
  // Let the presence diffs of the storm arrive, and see who stays connected.
  await sleep(scenario.duration * 1000);
  stopping = true;
  const diffs = clients.map((client) => client.presenceDiffs);
  const cutOff = Object.values(closes).reduce((sum, n) => sum + n, 0);
  emit({
    event: "result",
    clients: clients.length,
    subscribed: served.length,
    not_subscribed: clients.length - served.length,
    storm_seconds: seconds,
    clients_per_s: served.length / seconds,
    loadgen_cpu: loadgenCpu,
    cut_off: cutOff + clients.length - served.length,
    presence_diffs_max: Math.max(...diffs),
    presence_diffs_mean: diffs.reduce((sum, n) => sum + n, 0) / diffs.length,
    last_users_min: Math.min(...clients.map((client) => client.lastUsers ?? 0)),
    error_frames: errorFrames,
    unexpected_closes: closes,
  });
  for (const client of clients) client.ws.terminate();
  process.exit(0);
}

main().catch((err) => fail(err.stack || String(err)));
