// DeepDrummer Live rating page: one WebSocket to the daemon, every button a command of its table.
// The daemon pushes its outbound messages (/dd/loop, /dd/rated...) and snapshots; nothing is polled here.
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws` +
  (token ? `?token=${encodeURIComponent(token)}` : "");
const RETRY_MIN_MS = 250, RETRY_MAX_MS = 2000;

let ws = null;
let retryMs = RETRY_MIN_MS;
let nextId = 1;
const pending = new Map(); // request id -> command name
let commands = {};         // the daemon's command table: name -> {params, help, reply}
let snap = null;           // the latest snapshot
let newestLoopId = -1;     // the loop shown (its id)
let loopEventAt = -1e9;    // when the last /dd/loop came: a snapshot taken before it must not undo it
const SNAPSHOT_GRACE_MS = 1000; // (a recalled loop has an older id, so ids alone cannot say which is newer)
let loopRows = [];         // [{sample, note, role, steps, levels, locked}]
let step = 0;
// The loop's shape (contract v1.2): the page shows one bar at a time, the playing one unless a bar tab
// was tapped (8 rows x 4 bars stay readable on a phone in portrait); the other bars are one tap away.
let shape = { stepsPerBar: 16, bars: 1, meter: "4/4", beats: [0, 4, 8, 12] };
let shownBar = 0;
let followPlayhead = true;
let playing = false;
let saveRequested = false;

// --- connection ---------------------------------------------------------------------------------

function connect() {
  ws = new WebSocket(wsUrl);
  ws.onopen = () => { retryMs = RETRY_MIN_MS; };
  ws.onmessage = (e) => handle(JSON.parse(e.data));
  ws.onclose = () => {
    setConnected(false);
    explainRefusal();
    for (const [, name] of pending) showError(`${name}: no answer, the daemon went away`);
    pending.clear();
    setTimeout(connect, retryMs);
    retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
  };
}

function explainRefusal() {
  // A refused WebSocket looks like any lost one; ask the page's own address whether it is a 403.
  fetch(location.pathname + location.search, { method: "HEAD", cache: "no-store" })
    .then((r) => {
      if (r.status === 403) setConnected(false, "disconnected: refused, this address has no valid token; " +
        "open the address the daemon printed");
    })
    .catch(() => {}); // the daemon is down: "reconnecting" says it already
}

function setConnected(on, text) {
  const el = $("conn");
  el.textContent = on ? "connected" : (text || "disconnected: reconnecting…");
  el.className = "conn " + (on ? "on" : "off");
  document.body.classList.toggle("offline", !on);
}

function send(name, args = []) {
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    showError("disconnected: the daemon is not reachable; waiting for it to come back");
    return;
  }
  const id = nextId++;
  pending.set(id, name);
  ws.send(JSON.stringify({ id, command: name, args }));
}

// --- messages from the daemon -----------------------------------------------------------------------

function handle(msg) {
  switch (msg.type) {
    case "hello":
      commands = msg.commands || {};
      setConnected(true);
      setupControls();
      applySnapshot(msg.snapshot);
      loadLibrary();
      break;
    case "snapshot":
      applySnapshot(msg.snapshot);
      break;
    case "step":
      playing = !!msg.playing;
      setStep(msg.step);
      break;
    case "event":
      onEvent(msg.address, msg.args || []);
      break;
    case "result":
      pending.delete(msg.id);
      if (msg.ok) clearError();
      else showError(msg.error);
      break;
  }
}

function onEvent(address, a) {
  if (address === "/dd/loop") {
    // i loop_id, f p_like, f bpm, i n_steps, then (s sample, i note, s steps) per row
    const rows = [];
    for (let i = 4; i + 2 < a.length; i += 3) {
      const old = loopRows[rows.length] || {};
      rows.push({ sample: a[i], note: a[i + 1], steps: a[i + 2], role: "",
                  locked: old.locked && old.sample === a[i] && old.steps === a[i + 2] });
    }
    loopEventAt = performance.now();
    showLoop(a[0], a[1], rows, true);
  } else if (address === "/dd/shape") {
    // i loop_id, i steps_per_bar, i bars, s meter
    if (a[0] === newestLoopId) setShape({ stepsPerBar: a[1], bars: a[2], meter: a[3] });
  } else if (address === "/dd/levels") {
    if (a[0] === newestLoopId) {
      a.slice(1).forEach((lv, i) => { if (loopRows[i]) loopRows[i].levels = lv; });
      renderGrid();
    }
  } else if (address === "/dd/rated") {
    // only sent once the rating is durable
    $("rated").textContent = `Rated: ${a[1]} loop #${a[0]}`;
    $("rated").className = "rated rated-" + a[1];
    setCounts(a[2], a[3]);
  } else if (address === "/dd/undone") {
    $("rated").textContent = `Undone: rating of loop #${a[0]} taken back`;
    $("rated").className = "rated";
    if (a.length >= 3) setCounts(a[1], a[2]);
  } else if (address === "/dd/saved" && saveRequested) {
    // liked loops are written to the library too: only a Save pressed here is news worth a line
    saveRequested = false;
    $("rated").textContent = `Saved loop #${a[0]}: ${String(a[1]).split("/").pop()}`;
    $("rated").className = "rated rated-saved";
  } else if (address === "/dd/error") {
    showError(a[0]);
  } else if (address === "/dd/profile") {
    $("rated").textContent = `Profile ${a[0]} (${a[1]} ratings)`;
    $("rated").className = "rated";
  } else if (address === "/dd/filled") {
    $("rated").textContent = `Fill: loop #${a[1]} goes on after this bar`;
    $("rated").className = "rated";
  }
  if (address === "/dd/saved") loadLibrary(); // a like's or a save's files are on disk
}

function applySnapshot(s) {
  if (!s) return;
  snap = s;
  const loop = s.loop;
  // a newer id, or an older one (/dd/recall) once no /dd/loop has just come
  if (loop && (loop.id >= newestLoopId || performance.now() - loopEventAt > SNAPSHOT_GRACE_MS)) {
    // a row's own `locked`, else the snapshot's list of locked row indices
    const rows = (loop.rows || []).map((r, i) => ({
      ...r,
      locked: r.locked !== undefined ? !!r.locked : Array.isArray(s.locks) && s.locks.includes(i),
    }));
    showLoop(loop.id, loop.p_like, rows);
    if (loop.steps_per_bar) setShape({ stepsPerBar: loop.steps_per_bar, bars: loop.bars, meter: loop.meter,
                                       beats: loop.beats });
  }
  if (s.shape) {
    for (const name of ["rows", "bars", "meter"]) {
      const sel = $(name);
      const choices = (s.shape.choices || {})[name] || [];
      if (sel.options.length !== choices.length) sel.replaceChildren(...choices.map((c) => new Option(String(c), String(c))));
      setValue(name, s.shape[name]);
    }
  }
  setCounts(s.likes, s.dislikes);
  playing = !!s.playing;
  $("transport").textContent = playing ? "playing" : "stopped";
  $("play").textContent = playing ? "Stop" : "Play";
  setValue("mode", s.mode);
  if (document.activeElement !== $("fotf")) $("fotf").checked = !!s.fotf;
  setValue("tempo", s.tempo != null ? Math.round(s.tempo * 10) / 10 : "");
  $("tempo").disabled = s.clock && s.clock !== "internal";
  if (Array.isArray(s.profiles)) setProfiles(s.profiles, s.profile);
  setRange("swing", s.swing);
  setRange("density", s.density);
  setStep(s.step);
  showTaste(s.taste);
  // [learnt, of] while the critic still learns to hear the kit; null once it hears as well as it will
  const hearing = Array.isArray(s.hearing) ? s.hearing : null;
  $("hearing").hidden = !hearing;
  $("hearing").textContent = hearing
    ? `learning to hear the kit ${Math.min(99, Math.floor((100 * hearing[0]) / Math.max(1, hearing[1])))}%` : "";
}

// --- view ------------------------------------------------------------------------------------------------

function showLoop(id, pLike, rows, force = false) {
  if (id < newestLoopId && !force && performance.now() - loopEventAt <= SNAPSHOT_GRACE_MS) return;
  const fresh = id !== newestLoopId;
  newestLoopId = id;
  loopRows = rows;
  $("loop").dataset.loopId = String(id);
  $("loop-title").textContent = `loop #${id}`;
  const p = typeof pLike === "number" ? pLike : 0;
  $("plike").value = p;
  $("plike-text").textContent = p.toFixed(2);
  renderGrid();
  if (fresh) {
    $("loop").classList.remove("flash");
    void $("loop").offsetWidth; // restart the animation
    $("loop").classList.add("flash");
  }
}

// Beats of each meter within a bar, when a /dd/shape arrives before the snapshot that names them
const METER_BEATS = { "4/4": [0, 4, 8, 12], "3/4": [0, 4, 8], "6/8": [0, 6], "5/4": [0, 4, 8, 12, 16], "7/8": [0, 4, 8] };

function setShape(next) {
  const beats = next.beats || METER_BEATS[next.meter] || [];
  const changed = next.stepsPerBar !== shape.stepsPerBar || next.bars !== shape.bars || next.meter !== shape.meter;
  shape = { ...next, beats };
  $("shape").textContent = `${shape.bars > 1 ? shape.bars + " bars of " : ""}${shape.meter}`;
  if (changed) {
    shownBar = Math.min(shownBar, shape.bars - 1);
    renderGrid();
  }
}

function renderBarTabs() {
  const tabs = $("bar-tabs");
  tabs.hidden = shape.bars <= 1;
  tabs.replaceChildren();
  if (shape.bars <= 1) return;
  const playingBar = Math.floor(step / shape.stepsPerBar);
  for (let b = 0; b < shape.bars; b++) {
    const tab = document.createElement("button");
    tab.className = "bar-tab" + (b === playingBar && playing ? " playing" : "");
    tab.textContent = `bar ${b + 1}`;
    tab.setAttribute("aria-pressed", b === shownBar ? "true" : "false");
    tab.onclick = () => {
      // the playing bar again: follow the playhead; another bar: stay on it
      followPlayhead = playing && b === playingBar;
      shownBar = b;
      renderGrid();
    };
    tabs.append(tab);
  }
}

function renderGrid() {
  const grid = $("grid");
  grid.replaceChildren();
  renderBarTabs();
  const first = shownBar * shape.stepsPerBar;
  const lockable = "lock" in commands;
  loopRows.forEach((r, i) => {
    const row = document.createElement("div");
    row.className = "row" + (r.locked ? " locked" : "");
    const label = document.createElement("div");
    label.className = "label";
    const name = document.createElement("span");
    name.className = "sample";
    name.textContent = r.sample;
    name.title = `${r.sample}${r.role ? " (" + r.role + ")" : ""}, note ${r.note}`;
    label.append(name);
    if (lockable) {
      const lock = document.createElement("button");
      lock.className = "lock";
      lock.textContent = r.locked ? "locked" : "lock";
      lock.setAttribute("aria-label", `lock row ${i + 1}`);
      lock.setAttribute("aria-pressed", r.locked ? "true" : "false");
      lock.onclick = () => send("lock", [i, r.locked ? 0 : 1]);
      label.append(lock);
    }
    row.append(label);
    const steps = String(r.steps || "");
    const levels = String(r.levels || "");
    const n = Math.min(shape.stepsPerBar, Math.max(0, steps.length - first)) || steps.length;
    row.style.gridTemplateColumns = gridColumns(n);
    for (let s = first; s < first + n; s++) {
      if (s > first && shape.beats.includes(s - first)) {
        row.append(Object.assign(document.createElement("div"), { className: "beat-gap" }));
      }
      const cell = document.createElement("div");
      const hit = steps[s] === "x";
      cell.className = "cell" + (hit ? " hit" : "");
      cell.dataset.step = String(s);
      if (hit) {
        const level = /[1-9]/.test(levels[s] || "") ? Number(levels[s]) : 7;
        cell.style.setProperty("--level", String(level / 9));
        cell.title = `level ${level}`;
      }
      row.append(cell);
    }
    grid.append(row);
  });
  setStep(step);
}

function gridColumns(nSteps) {
  // the label, then the bar's steps in its meter's beats with a narrow gap between beats
  const starts = shape.beats.filter((b) => b < nSteps);
  if (!starts.length || starts[0] !== 0) starts.unshift(0);
  const beats = starts.map((b, i) => `repeat(${(starts[i + 1] ?? nSteps) - b}, 1fr)`);
  return "minmax(64px, 110px) " + beats.join(" 5px ");
}

function setStep(s) {
  if (typeof s !== "number") return;
  step = s;
  const bar = Math.floor(s / shape.stepsPerBar);
  if (shape.bars > 1 && playing && followPlayhead && bar !== shownBar && bar < shape.bars) {
    shownBar = bar;
    renderGrid(); // calls setStep again, now on the shown bar
    return;
  }
  for (const el of document.querySelectorAll(".cell.now")) el.classList.remove("now");
  if (!playing) return;
  for (const el of document.querySelectorAll(`.cell[data-step="${s}"]`)) el.classList.add("now");
}

function showTaste(taste) {
  // {likes: [[fact, weight, z, words]], avoids: [...], ratings}: the critic that reads loops only
  $("taste").hidden = !taste;
  if (!taste) return;
  $("taste-ratings").textContent = `from ${taste.ratings} rating${taste.ratings === 1 ? "" : "s"}`;
  const item = (sign) => ([name, , , words]) =>
    Object.assign(document.createElement("li"), { textContent: `${sign} ${name}`, title: words, className: words.replace(" ", "-") });
  $("taste-likes").replaceChildren(...(taste.likes || []).map(item("+")));
  $("taste-avoids").replaceChildren(...(taste.avoids || []).map(item("−")));
}

function setCounts(likes, dislikes) {
  if (likes != null) $("likes").textContent = String(likes);
  if (dislikes != null) $("dislikes").textContent = String(dislikes);
}

function showError(text) {
  $("error").textContent = text || "";
}

function clearError() {
  $("error").textContent = "";
}

function setValue(id, v) {
  const el = $(id);
  if (v == null || document.activeElement === el) return; // never fight the user's typing
  el.value = String(v);
}

function setRange(id, v) {
  if (Array.isArray(v)) v = v.length ? v.reduce((a, b) => a + b, 0) / v.length : null; // per row: their mean
  if (v == null) return;
  setValue(id, v);
  $(`${id}-out`).textContent = Number(v).toFixed(2);
}

function setProfiles(names, current) {
  const sel = $("profile");
  const have = Array.from(sel.options).map((o) => o.value);
  if (have.join("\n") !== names.join("\n")) sel.replaceChildren(...names.map((n) => new Option(n, n)));
  setValue("profile", current);
}

// --- the library: liked and saved loops, newest first, with recall and downloads ---------------------------

const withToken = (path) => path + (token ? `?token=${encodeURIComponent(token)}` : "");
let libraryLoading = false;

function loadLibrary() {
  if (!has("recall") || libraryLoading) return;
  libraryLoading = true;
  fetch(withToken("/library"), { cache: "no-store" })
    .then((r) => (r.ok ? r.json() : { loops: [] }))
    .then((data) => renderLibrary(data.loops || []))
    .catch(() => {}) // the daemon is away: the list stays as it was, the connection line says why
    .finally(() => { libraryLoading = false; });
}

function renderLibrary(loops) {
  const list = $("library-list");
  list.replaceChildren(...loops.map((e) => {
    const li = document.createElement("li");
    li.dataset.libraryLoopId = String(e.loop_id);
    const title = document.createElement("span");
    title.className = "lib-title";
    title.textContent = `#${e.loop_id} ${e.kind === "liked" ? "liked" : e.name}`;
    const recall = document.createElement("button");
    recall.textContent = "Recall";
    recall.setAttribute("aria-label", `Recall loop #${e.loop_id}`);
    recall.onclick = () => send("recall", [e.loop_id]);
    li.append(title, recall);
    for (const ext of ["mid", "wav", "sfz"]) {
      if (!e.files[ext]) continue;
      const a = document.createElement("a");
      a.href = withToken(e.files[ext]);
      a.download = e.files[ext].split("/").pop();
      a.textContent = "." + ext;
      a.setAttribute("aria-label", `loop #${e.loop_id} .${ext}`);
      li.append(a);
    }
    return li;
  }));
}

// --- controls -------------------------------------------------------------------------------------------

function has(name) { return name in commands; }

function setupControls() {
  for (const el of document.querySelectorAll("[data-needs]")) el.hidden = !has(el.dataset.needs);
  for (const el of document.querySelectorAll("button[data-command]")) el.hidden = !has(el.dataset.command);
  $("play").hidden = !(has("play_toggle") || (has("play") && has("stop")));
  if (has("mode")) {
    const choices = commands.mode.params[0].choices || [];
    const sel = $("mode");
    if (sel.options.length !== choices.length) {
      sel.replaceChildren(...choices.map((c) => new Option(c, c)));
    }
  }
  for (const name of ["tempo", "swing", "density"]) {
    if (!has(name)) continue;
    const p = commands[name].params[0];
    const el = $(name);
    if (p.lo != null) el.min = p.lo;
    if (p.hi != null) el.max = p.hi;
    if (name !== "tempo") el.step = "0.01";
  }
}

function togglePlay() {
  if (has("play_toggle")) send("play_toggle");
  else send(playing ? "stop" : "play");
}

for (const el of document.querySelectorAll("button[data-command]")) {
  el.addEventListener("click", () => {
    if (el.dataset.command === "save") saveRequested = true;
    send(el.dataset.command);
  });
}
$("play").addEventListener("click", togglePlay);
$("profile").addEventListener("change", (e) => send("profile", [e.target.value]));
$("profile-add").addEventListener("click", () => {
  const name = $("profile-name").value.trim();
  if (name) send("profile", [name]); // the daemon checks the name; a bad one comes back as an error
  $("profile-name").value = "";
});
$("mode").addEventListener("change", (e) => send("mode", [e.target.value]));
$("rows").addEventListener("change", (e) => send("rows", [Number(e.target.value)]));
$("bars").addEventListener("change", (e) => send("bars", [Number(e.target.value)]));
$("meter").addEventListener("change", (e) => send("meter", [e.target.value]));
$("fotf").addEventListener("change", (e) => send("fotf", [e.target.checked ? 1 : 0]));
$("tempo").addEventListener("change", (e) => {
  const bpm = Number(e.target.value);
  if (e.target.value !== "" && Number.isFinite(bpm)) send("tempo", [bpm]);
});
for (const name of ["swing", "density"]) {
  $(name).addEventListener("input", (e) => { $(`${name}-out`).textContent = Number(e.target.value).toFixed(2); });
  $(name).addEventListener("change", (e) => send(name, [Number(e.target.value)]));
}

const KEYS = { l: "like", d: "dislike", n: "next", u: "undo", v: "vary", f: "fill" };
document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
  const t = e.target;
  if (t instanceof HTMLInputElement && t.type !== "checkbox" && t.type !== "range") return; // typing a tempo
  if (t instanceof HTMLSelectElement) return;
  if (e.key === " ") {
    e.preventDefault(); // not a click on the focused button, not a page scroll
    togglePlay();
  } else if (KEYS[e.key.toLowerCase()] && has(KEYS[e.key.toLowerCase()])) {
    e.preventDefault();
    send(KEYS[e.key.toLowerCase()]);
  }
});

document.addEventListener("keyup", (e) => {
  if (e.key === " " && !(e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement)) {
    e.preventDefault(); // a focused button would take the space bar as a click on key up
  }
});

setConnected(false, "connecting…");
connect();
