// The chat page: a reference client of chat_service's wire protocol v2.
// One WebSocket for every room; recovers with `since` after a reconnect;
// bodies and names are only ever set as text (textContent), never as HTML.
"use strict";

(() => {
  const WS_PATH = "/api/chat-api/ws";
  const ROOMS_PATH = "/api/chat-api/rooms";
  const NAME = /^[A-Za-z0-9._-]{1,64}$/;
  // Close codes after which trying again can work (as the terminal client's).
  const RECONNECT_CODES = new Set([1001, 1006, 1011, 1012, 1013, 1014, 4000, 4001]);
  // Errors that refuse the line in flight for good; rate_limited means "later".
  const REFUSING = new Set(["invalid_message", "body_too_long", "not_subscribed", "forbidden_room"]);
  const RECONNECT_MIN = 0.5; // seconds; the bound doubles per failed attempt...
  const RECONNECT_MAX = 15; // ...up to this
  const HEARTBEAT_SLACK = 10; // silence beyond the heartbeat interval that means "gone"
  const RATE_LIMIT_PAUSE = 1000; // ms before a rate-limited line goes out again
  const PAGE = 50; // messages per history page

  const $ = (selector) => document.querySelector(selector);

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function newId() {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  class Room {
    constructor(name) {
      this.name = name;
      this.epoch = null; // the room's epoch and the largest seq shown in it
      this.seq = 0;
      this.joined = false; // subscribed on the current socket
      this.everJoined = false;
      this.askedSince = false; // since was sent for it on the current socket
      this.resubscribing = false;
      this.seen = new Set(); // message ids shown
      this.unread = 0;
      this.oldest = null; // the smallest seq shown of the current epoch
      this.hasMore = false;
      this.loading = false;
      this.segmentStart = null; // the marker older pages go after (null: the top)
      this.members = new Map();
      this.users = 0;
      this.log = element("ol", "log");
      this.log.setAttribute("role", "log");
      this.log.setAttribute("aria-label", `Messages in #${name}`);
      this.log.dataset.room = name;
      this.log.hidden = true;
      this.item = element("li");
      this.button = element("button", "room");
      this.button.type = "button";
      this.button.dataset.room = name;
      this.button.append(element("span", "room-name", `#${name}`));
      this.badge = element("span", "unread");
      this.badge.hidden = true;
      this.button.append(this.badge);
      this.leave = element("button", "leave", "×");
      this.leave.type = "button";
      this.leave.setAttribute("aria-label", `Leave #${name}`);
      this.item.append(this.button, this.leave);
    }

    since() {
      return this.epoch === null ? null : { epoch: this.epoch, seq: this.seq };
    }
  }

  const state = {
    userId: "",
    token: "",
    tokenUrl: "",
    clientId: null,
    rooms: new Map(),
    active: null,
    ws: null,
    pathRoom: null,
    attempt: 0,
    welcomed: false, // the current socket has had its welcome
    wasDown: false, // a socket was lost since the last welcome
    heartbeat: null,
    watchdog: null,
    retryTimer: null,
    queue: [],
    inFlight: null,
    historyMissing: false,
  };

  // ---- the view -----------------------------------------------------------

  function setStatus(kind, text) {
    const status = $("#status");
    status.dataset.state = kind;
    status.textContent = text;
  }

  function atBottom(log) {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  function keepBottom(log, change) {
    const stick = atBottom(log);
    change();
    if (stick) log.scrollTop = log.scrollHeight;
  }

  function messageItem(frame) {
    const item = element("li", "msg");
    if (frame.client_id === state.clientId) item.classList.add("mine");
    item.dataset.seq = frame.seq ?? "";
    const when = new Date(frame.ts);
    const time = element("time", "", when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    time.dateTime = when.toISOString();
    time.title = when.toLocaleString();
    item.append(time, element("span", "who", frame.user_id), element("span", "body", frame.body));
    return item;
  }

  function note(room, text, className = "note") {
    const item = element("li", className, text);
    keepBottom(room.log, () => room.log.append(item));
    return item;
  }

  function renderUnread(room) {
    room.badge.hidden = room.unread === 0;
    room.badge.textContent = String(room.unread);
    room.badge.setAttribute("aria-label", `${room.unread} unread`);
  }

  function renderMembers() {
    const room = state.rooms.get(state.active);
    const people = $("#people");
    if (!room || (room.members.size === 0 && room.users === 0)) {
      people.hidden = true;
      return;
    }
    people.hidden = false;
    $("#people-title").textContent = `Here (${room.users})`;
    const list = $("#members");
    list.replaceChildren();
    for (const [user, connections] of [...room.members].sort()) {
      const item = element("li", "", user);
      if (connections > 1) item.append(element("small", "", ` ×${connections}`));
      list.append(item);
    }
  }

  function renderOlder() {
    const room = state.rooms.get(state.active);
    const older = $("#older");
    older.hidden = !room || !room.hasMore || state.historyMissing;
    older.disabled = Boolean(room && room.loading);
  }

  function show(name) {
    const room = state.rooms.get(name);
    if (!room) return;
    state.active = name;
    for (const other of state.rooms.values()) {
      other.log.hidden = other !== room;
      if (other === room) other.button.setAttribute("aria-current", "true");
      else other.button.removeAttribute("aria-current");
    }
    room.unread = 0;
    renderUnread(room);
    $("#room-title").textContent = `#${name}`;
    room.log.scrollTop = room.log.scrollHeight;
    renderMembers();
    renderOlder();
    localStorage.setItem("chat.rooms", [...state.rooms.keys()].join(" "));
  }

  function addRoom(name) {
    let room = state.rooms.get(name);
    if (!room) {
      room = new Room(name);
      state.rooms.set(name, room);
      $("#rooms").append(room.item);
      $("#logs").append(room.log);
      room.button.addEventListener("click", () => show(name));
      room.leave.addEventListener("click", () => leaveRoom(name));
      room.log.addEventListener("scroll", () => {
        if (room.log.scrollTop === 0) loadOlder(room);
      });
      if (state.ws && state.pathRoom && state.rooms.get(state.pathRoom)?.joined) {
        send(subscribeFrame(room));
      }
    }
    return room;
  }

  function leaveRoom(name) {
    const room = state.rooms.get(name);
    if (!room || state.rooms.size === 1) return; // a socket needs one room
    state.rooms.delete(name);
    room.item.remove();
    room.log.remove();
    state.queue = state.queue.filter((line) => line.room !== name);
    if (room.joined) send({ type: "unsubscribe", room: name });
    if (state.active === name) show(state.rooms.keys().next().value);
  }

  // ---- the socket -----------------------------------------------------------

  function send(frame) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(frame));
  }

  function socketUrl(room) {
    const query = new URLSearchParams();
    if (state.token) query.set("token", state.token);
    else if (state.userId) query.set("user_id", state.userId);
    const since = room.since();
    if (since) {
      query.set("since", String(since.seq));
      query.set("epoch", since.epoch);
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${WS_PATH}/${encodeURIComponent(room.name)}?${query}`;
  }

  function connect() {
    state.retryTimer = null;
    const path = state.rooms.values().next().value;
    for (const room of state.rooms.values()) {
      room.joined = false;
      room.askedSince = false;
      room.resubscribing = false;
    }
    path.askedSince = path.since() !== null;
    if (state.inFlight) state.queue.unshift(state.inFlight); // goes out again, same client_msg_id
    state.inFlight = null;
    state.pathRoom = path.name;
    state.welcomed = false;
    setStatus("connecting", state.wasDown ? "Reconnecting…" : "Connecting…");
    const ws = new WebSocket(socketUrl(path));
    state.ws = ws;
    ws.addEventListener("message", (event) => {
      if (ws !== state.ws) return;
      armWatchdog();
      for (const line of String(event.data).split("\n")) {
        if (line) handle(JSON.parse(line));
      }
    });
    ws.addEventListener("close", (event) => {
      if (ws === state.ws) lost(event.code, event.reason);
    });
  }

  function armWatchdog() {
    clearTimeout(state.watchdog);
    if (state.heartbeat === null) return;
    state.watchdog = setTimeout(() => {
      // Silence: the network went away without a close reaching us.
      const ws = state.ws;
      state.ws = null;
      if (ws) ws.close();
      lost(1006, "no heartbeat");
    }, (state.heartbeat + HEARTBEAT_SLACK) * 1000);
  }

  function lost(code, reason) {
    clearTimeout(state.watchdog);
    state.ws = null;
    state.wasDown = true;
    if (code === 4002) {
      setStatus("closed", "Your session expired: sign in again.");
      return;
    }
    if (!RECONNECT_CODES.has(code)) {
      setStatus("closed", `Disconnected by the server (${code}${reason ? `: ${reason}` : ""}).`);
      return;
    }
    scheduleReconnect(state.welcomed ? "Disconnected" : "Cannot connect");
  }

  function scheduleReconnect(why) {
    if (state.retryTimer !== null) return;
    state.attempt += 1;
    const bound = Math.min(RECONNECT_MAX, RECONNECT_MIN * 2 ** state.attempt);
    const delay = RECONNECT_MIN + Math.random() * (bound - RECONNECT_MIN);
    setStatus("reconnecting", `${why}; reconnecting in ${delay.toFixed(1)} s…`);
    state.retryTimer = setTimeout(connect, delay * 1000);
  }

  function reconnectNow() {
    if (state.retryTimer === null) return;
    clearTimeout(state.retryTimer);
    connect();
  }

  function subscribeFrame(room) {
    const frame = { type: "subscribe", room: room.name };
    const since = room.since();
    if (since) frame.since = since;
    room.askedSince = since !== null;
    return frame;
  }

  // ---- frames -------------------------------------------------------------

  function handle(frame) {
    switch (frame.type) {
      case "ping":
        send({ type: "pong" });
        break;
      case "welcome":
        state.clientId = frame.client_id;
        state.heartbeat = Number(frame.heartbeat_interval);
        state.attempt = 0;
        state.welcomed = true;
        setStatus("connected", `Connected as ${frame.user_id}`);
        armWatchdog();
        break;
      case "subscribed":
        subscribed(frame);
        break;
      case "unsubscribed":
        unsubscribed(frame);
        break;
      case "chat":
        chat(frame);
        break;
      case "presence_diff":
        presenceDiff(frame);
        break;
      case "error":
        refused(frame);
        break;
      case "token_expiring":
        tokenExpiring(frame.exp);
        break;
      case "refreshed":
        $("#token-banner").hidden = true;
        showSession(frame.exp);
        break;
      default:
        break; // pong, and frame types added later
    }
  }

  function subscribed(frame) {
    const room = state.rooms.get(frame.room);
    if (!room) return; // left meanwhile
    if (room.askedSince && !("recovered" in frame) && !room.resubscribing) {
      // A server that ignores `since` in the query: join again with it in a frame.
      room.resubscribing = true;
      send({ type: "unsubscribe", room: room.name });
      return;
    }
    room.resubscribing = false;
    const wasJoined = room.joined;
    const rejoined = room.everJoined && !wasJoined;
    room.joined = true;
    room.everJoined = true;
    if (frame.presence) {
      room.members = new Map(frame.presence.members.map((m) => [m.user_id, m.connections]));
      room.users = frame.presence.users;
    }
    if (frame.recovered === true) {
      note(room, "Reconnected: nothing missed.");
    } else if (frame.recovered === false || (rejoined && !room.askedSince)) {
      const why = frame.reason || "the room keeps no history";
      room.segmentStart = note(
        room,
        `Messages from before this point could not be recovered (${why}); some may be missing.`,
        "gap",
      );
    }
    if (frame.epoch !== room.epoch || frame.recovered !== true) {
      const fresh = room.epoch === null && room.seen.size === 0;
      room.epoch = frame.epoch;
      room.seq = frame.seq ?? 0;
      room.oldest = room.seq + 1;
      room.hasMore = frame.epoch !== null && room.seq > 0;
      if (fresh) loadOlder(room); // the room's recent past, as context
    }
    if (room.name === state.active) {
      renderMembers();
      renderOlder();
    }
    if (room.name === state.pathRoom && !wasJoined) {
      for (const other of state.rooms.values()) if (other !== room) send(subscribeFrame(other));
    }
    sendNext();
  }

  function unsubscribed(frame) {
    const room = state.rooms.get(frame.room);
    if (!room) return;
    room.joined = false;
    if (room.resubscribing) {
      send(subscribeFrame(room));
    } else if (frame.reason === "forbidden") {
      note(room, "You may no longer be in this room.", "gap");
    }
  }

  function chat(frame) {
    const room = state.rooms.get(frame.room);
    if (!room) return;
    const isNew = !room.seen.has(frame.id) && !(typeof frame.seq === "number" && frame.seq <= room.seq);
    if (isNew) {
      if (typeof frame.seq === "number") room.seq = frame.seq;
      room.seen.add(frame.id);
      keepBottom(room.log, () => room.log.append(messageItem(frame)));
      if (room.name !== state.active && frame.client_id !== state.clientId) {
        room.unread += 1;
        renderUnread(room);
      }
    }
    const line = state.inFlight;
    if (line && frame.client_msg_id === line.id && frame.room === line.room) {
      line.item.remove();
      state.inFlight = null;
      sendNext();
    }
  }

  function presenceDiff(frame) {
    const room = state.rooms.get(frame.room);
    if (!room) return;
    for (const join of frame.joins || []) room.members.set(join.user_id, join.connections);
    for (const leave of frame.leaves || []) room.members.delete(leave.user_id);
    room.users = frame.users;
    if (room.name === state.active) renderMembers();
  }

  function refused(frame) {
    if (frame.code === "invalid_token") {
      $("#token-banner-text").textContent = "That token was refused; paste another one.";
      $("#token-banner").hidden = false;
      return;
    }
    const line = state.inFlight;
    const about = frame.room || (line && line.room) || state.active;
    const room = state.rooms.get(about);
    if (line && about === line.room && frame.code === "rate_limited") {
      setTimeout(() => {
        if (state.inFlight === line) send(line.frame());
      }, RATE_LIMIT_PAUSE);
      return;
    }
    if (line && about === line.room && REFUSING.has(frame.code)) {
      line.item.classList.replace("pending", "failed");
      line.item.append(element("span", "why", ` not sent: ${frame.detail}`));
      state.inFlight = null;
      sendNext();
      return;
    }
    if (room) note(room, `Error: ${frame.detail}`, "gap");
  }

  // ---- saying things ----------------------------------------------------------

  function say(body) {
    const room = state.rooms.get(state.active);
    const id = newId();
    const item = element("li", "msg mine pending");
    item.append(element("span", "who", state.userId || "you"), element("span", "body", body));
    keepBottom(room.log, () => room.log.append(item));
    const line = {
      id,
      room: room.name,
      item,
      frame: () => ({ type: "chat", room: room.name, body, client_msg_id: id }),
    };
    state.queue.push(line);
    sendNext();
  }

  // One line in flight at a time: order survives a reconnect, and an error
  // frame (which names no client_msg_id) can be matched to its line.
  function sendNext() {
    if (state.inFlight || !state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    const line = state.queue[0];
    if (!line || !state.rooms.get(line.room)?.joined) return;
    state.queue.shift();
    state.inFlight = line;
    send(line.frame());
  }

  // ---- history ------------------------------------------------------------

  async function loadOlder(room) {
    if (room.loading || !room.hasMore || state.historyMissing) return;
    room.loading = true;
    renderOlder();
    try {
      const query = new URLSearchParams({ before: String(room.oldest), limit: String(PAGE) });
      const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
      const response = await fetch(`${ROOMS_PATH}/${encodeURIComponent(room.name)}/messages?${query}`, {
        headers,
      });
      if (response.status === 404) {
        state.historyMissing = true; // a server without the history endpoint
        return;
      }
      if (!response.ok) return;
      const page = await response.json();
      if (page.epoch !== room.epoch) return; // history was lost meanwhile
      const log = room.log;
      const height = log.scrollHeight;
      const fragment = document.createDocumentFragment();
      for (const message of page.messages) {
        if (room.seen.has(message.id) || message.seq >= room.oldest) continue;
        room.seen.add(message.id);
        fragment.append(messageItem(message));
      }
      const anchor = room.segmentStart ? room.segmentStart.nextSibling : log.firstChild;
      log.insertBefore(fragment, anchor);
      log.scrollTop += log.scrollHeight - height;
      if (page.messages.length) room.oldest = Math.min(room.oldest, page.messages[0].seq);
      room.hasMore = Boolean(page.has_more);
    } catch (error) {
      note(room, `Could not load older messages: ${error}`, "gap");
    } finally {
      room.loading = false;
      renderOlder();
    }
  }

  // ---- tokens -------------------------------------------------------------

  async function tokenExpiring(exp) {
    const at = new Date(exp * 1000).toLocaleTimeString();
    if (state.tokenUrl) {
      try {
        const response = await fetch(state.tokenUrl, { credentials: "same-origin", cache: "no-store" });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const text = (await response.text()).trim();
        const token = text.startsWith("{") ? JSON.parse(text).token : text;
        useToken(token);
        return;
      } catch (error) {
        $("#token-banner-text").textContent = `Could not renew the session (${error}); it ends at ${at}.`;
      }
    } else {
      $("#token-banner-text").textContent = `Your session ends at ${at}: paste a new token to stay.`;
    }
    $("#token-banner").hidden = false;
  }

  function showSession(exp) {
    const session = $("#session");
    session.dataset.exp = String(exp);
    session.textContent = `Signed in until ${new Date(exp * 1000).toLocaleTimeString()}`;
    session.hidden = false;
  }

  function useToken(token) {
    state.token = token;
    send({ type: "refresh", token });
  }

  // ---- wiring -------------------------------------------------------------

  function roomsFrom(text) {
    return [...new Set(text.split(/[\s,]+/).filter(Boolean))];
  }

  function start(event) {
    event.preventDefault();
    const name = $("#login-name").value.trim();
    const token = $("#login-token").value.trim();
    const rooms = roomsFrom($("#login-rooms").value);
    const error = $("#login-error");
    const bad = [name, ...rooms].filter((n, i) => (i > 0 || n) && !NAME.test(n));
    error.hidden = bad.length === 0 && rooms.length > 0;
    if (!error.hidden) {
      error.textContent = rooms.length
        ? `Not a valid name: ${bad.join(", ")} (1 to 64 of A-Z a-z 0-9 . _ -)`
        : "Name at least one room.";
      return;
    }
    state.userId = name;
    state.token = token;
    state.tokenUrl = $("#login-token-url").value.trim();
    localStorage.setItem("chat.name", name);
    localStorage.setItem("chat.tokenUrl", state.tokenUrl);
    for (const room of rooms) addRoom(room);
    $("#login").hidden = true;
    $("#chat").hidden = false;
    show(rooms[0]);
    connect();
    $("#message").focus();
  }

  function init() {
    const params = new URLSearchParams(location.search);
    $("#login-name").value = params.get("name") ?? localStorage.getItem("chat.name") ?? "";
    $("#login-rooms").value = params.get("rooms") ?? localStorage.getItem("chat.rooms") ?? "lobby";
    $("#login-token-url").value = params.get("token_url") ?? localStorage.getItem("chat.tokenUrl") ?? "";
    $("#login-form").addEventListener("submit", start);
    $("#sign-out").addEventListener("click", () => location.reload());
    $("#composer").addEventListener("submit", (event) => {
      event.preventDefault();
      const box = $("#message");
      const body = box.value.trim() ? box.value : "";
      if (!body) return;
      box.value = "";
      say(body);
    });
    $("#message").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("#composer").requestSubmit();
      }
    });
    $("#add-room").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = $("#add-room-name");
      const name = input.value.trim();
      if (!NAME.test(name)) return;
      input.value = "";
      addRoom(name);
      show(name);
    });
    $("#older").addEventListener("click", () => loadOlder(state.rooms.get(state.active)));
    $("#token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("#token-new").value.trim();
      if (token) useToken(token);
      $("#token-new").value = "";
    });
    document.addEventListener("keydown", (event) => {
      // Alt+Up / Alt+Down: the previous / next room.
      if (!event.altKey || (event.key !== "ArrowUp" && event.key !== "ArrowDown")) return;
      const names = [...state.rooms.keys()];
      if (!names.length) return;
      const step = event.key === "ArrowUp" ? -1 : 1;
      show(names[(names.indexOf(state.active) + step + names.length) % names.length]);
      event.preventDefault();
    });
    window.addEventListener("online", reconnectNow);
  }

  init();
})();
