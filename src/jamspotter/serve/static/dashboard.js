// jamspotter operator dashboard: live frame (server-sent events), jam-risk alerts, counts, alarm.
// Plain browser JavaScript, no build step, nothing fetched from outside the service.
"use strict";

const TOKEN_KEY = "jamspotter.token";
const ALARM_KEY = "jamspotter.alarm";
const $ = (id) => document.getElementById(id);

let token = localStorage.getItem(TOKEN_KEY) || "";
let events = null;          // the EventSource
let alertsVersion = null;   // the server's alerts_version we last loaded
let newestSeen = 0;         // highest alert id shown (ack-all acknowledges up to it)
let loadedOnce = false;     // no alarm for alerts that were there when the page opened
let audio = null;

// ---- talking to the service ---------------------------------------------------------------------------
class Unauthorised extends Error {}

function withToken(url) {
  return token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
}

async function api(path, method = "GET") {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const r = await fetch(path, { method, headers, cache: "no-store" });
  if (r.status === 401) {
    askToken(Boolean(token));
    throw new Unauthorised("token needed");
  }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.status + " " + r.statusText);
  return body;
}

function askToken(refused) {
  closeEvents();
  $("token-error").hidden = !refused;
  const dialog = $("token-dialog");
  if (!dialog.open) dialog.showModal();
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token-input").value.trim();
  localStorage.setItem(TOKEN_KEY, token);
  $("token-dialog").close();
  start();
});

$("token-button").addEventListener("click", () => askToken(false));

// ---- the live stream ----------------------------------------------------------------------------------
function closeEvents() {
  if (events) events.close();
  events = null;
}

function connect() {
  closeEvents();
  events = new EventSource(withToken("v1/stream/events"));
  events.addEventListener("open", () => setConn("live"));
  events.addEventListener("frame", (e) => showFrame(JSON.parse(e.data)));
  events.addEventListener("status", (e) => showStatus(JSON.parse(e.data)));
  events.addEventListener("error", () => {
    setConn("reconnecting");
    if (events && events.readyState === EventSource.CLOSED) {
      // the browser gave up (e.g. 401 or the server is down): check why, then try again
      closeEvents();
      setTimeout(start, 2000);
    }
  });
}

function setConn(state) {
  $("conn").className = "dot " + state;
  $("conn").title = state;
}

function fmtTime(unix) {
  return new Date(unix * 1000).toLocaleTimeString([], { hour12: false });
}

function showFrame(f) {
  const img = $("live");
  img.src = f.image;
  img.classList.toggle("jam", f.jam);
  $("no-frame").hidden = true;
  const verdict = f.jam ? "JAM RISK: " + f.label : f.label === "clear" ? "clear" : f.label;
  $("frame-caption").textContent =
    `· frame ${f.frame} · ${fmtTime(f.time)} · ${verdict} · ${Math.round(f.latency_ms)} ms`;
  const list = $("detections");
  list.replaceChildren(...f.detections.map((d) => {
    const li = document.createElement("li");
    li.className = d.jam_risk ? "jam" : "";
    const name = document.createElement("b");
    name.textContent = d.label;
    li.append(name, " [" + d.bbox.map(Math.round).join(", ") + "]");
    if (d.reason) li.append(" — " + d.reason);
    return li;
  }));
  if (f.problems && f.problems.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "parser: " + f.problems.join("; ");
    list.append(li);
  }
  showCounts(f.counts);
  if (lastStatus && f.frames !== lastStatus.frames) showStatus({ ...lastStatus, frames: f.frames, counts: f.counts });
  alertsChanged(f.alerts_version);
}

let lastStatus = null;
function showStatus(s) {
  lastStatus = s;
  const state = s.running ? "running" : s.ended ? "stream ended" : s.source ? "stopped" : "no stream";
  const source = s.source ? s.source.replace(/\/+$/, "").split("/").pop() : "no --stream";
  let text = `${source} · ${state} · ${s.frames} frame${s.frames === 1 ? "" : "s"}`;
  if (s.errors) text += ` · ${s.errors} error${s.errors === 1 ? "" : "s"}`;
  if (s.last_error) text += ` · last error: ${s.last_error}`;
  $("status-text").textContent = text;
  $("status-text").title = s.source || "";
  $("counts-window").textContent = `· last ${s.minutes} min`;
  $("open-count").textContent = s.unacked;
  showCounts(s.counts);
  alertsChanged(s.alerts_version);
}

function showCounts(counts) {
  const box = $("counts");
  if (!counts || !counts.length) {
    box.innerHTML = '<p class="muted">none yet</p>';
    return;
  }
  const top = Math.max(...counts.map((c) => c.count));
  box.replaceChildren(...counts.map((c) => {
    const row = document.createElement("div");
    row.className = "count-row" + (c.jam_risk ? " jam" : "");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = c.label;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = (100 * c.count / top).toFixed(1) + "%";
    bar.append(fill);
    const n = document.createElement("span");
    n.className = "n";
    n.textContent = c.count;
    row.append(label, bar, n);
    return row;
  }));
}

// ---- alerts -------------------------------------------------------------------------------------------
let loading = null;
let reloadAgain = false;
async function loadAlerts() {
  if (loading) {
    reloadAgain = true; // something changed while a load was under way: load once more after it
    return loading;
  }
  loading = (async () => {
    try {
      do {
        reloadAgain = false;
        const all = $("show-acked").checked;
        showAlerts(await api("v1/alerts?limit=100" + (all ? "" : "&unacked=1")));
      } while (reloadAgain);
    } catch (err) {
      if (!(err instanceof Unauthorised)) console.warn("alerts:", err);
    } finally {
      loading = null;
    }
  })();
  return loading;
}

function alertsChanged(version) {
  if (version === alertsVersion) return;
  alertsVersion = version;
  loadAlerts();
}

function showAlerts(data) {
  $("open-count").textContent = data.unacked;
  $("open-count").classList.toggle("hot", data.unacked > 0);
  $("ack-all").disabled = data.unacked === 0;
  const fresh = data.alerts.filter((a) => a.id > newestSeen && !a.acked);
  for (const a of data.alerts) newestSeen = Math.max(newestSeen, a.id);
  if (loadedOnce && fresh.length) alarm();
  loadedOnce = true;
  $("no-alerts").hidden = data.alerts.length > 0;
  $("alerts").replaceChildren(...data.alerts.map(alertItem));
}

function alertItem(a) {
  const li = document.createElement("li");
  li.className = "alert " + (a.acked ? "acked" : "open");
  li.dataset.id = a.id;
  if (a.thumbnail) {
    const img = document.createElement("img");
    img.className = "thumb";
    img.alt = "alert " + a.id;
    img.loading = "lazy";
    img.src = withToken(a.thumbnail.replace(/^\//, ""));
    li.append(img);
  }
  const info = document.createElement("div");
  info.className = "info";
  const title = document.createElement("div");
  title.className = "title";
  const cls = document.createElement("span");
  cls.className = "cls";
  cls.textContent = a.label;
  title.append(cls);
  if (a.confidence != null) title.append(" " + a.confidence.toFixed(2));
  const when = document.createElement("div");
  when.className = "when";
  when.textContent = `${fmtTime(a.time)} · frame ${a.frame ?? "?"} · #${a.id}`;
  info.append(title, when);
  if (a.reason) {
    const reason = document.createElement("div");
    reason.className = "reason";
    reason.textContent = a.reason;
    info.append(reason);
  }
  li.append(info);
  if (a.acked) {
    const done = document.createElement("span");
    done.className = "acked-note";
    done.textContent = "✓ " + fmtTime(a.acked_at);
    li.append(done);
  } else {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "ack";
    button.textContent = "Acknowledge";
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api(`v1/alerts/${a.id}/ack`, "POST");
      } finally {
        await loadAlerts();
      }
    });
    li.append(button);
  }
  return li;
}

$("ack-all").addEventListener("click", async () => {
  $("ack-all").disabled = true;
  try {
    await api("v1/alerts/ack?up_to=" + newestSeen, "POST");
  } finally {
    await loadAlerts();
  }
});

$("show-acked").addEventListener("change", loadAlerts);

// ---- alarm: a short beep (WebAudio) and a red flash --------------------------------------------------
const alarmToggle = $("alarm-toggle");
alarmToggle.checked = localStorage.getItem(ALARM_KEY) === "on";
alarmToggle.addEventListener("change", () => {
  localStorage.setItem(ALARM_KEY, alarmToggle.checked ? "on" : "off");
  if (alarmToggle.checked) {
    audio = audio || new AudioContext(); // created on a click, so the browser lets it play
    audio.resume();
  }
});

function beep() {
  if (!audio) audio = new AudioContext();
  const now = audio.currentTime;
  for (const start of [0, 0.25]) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "square";
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.0001, now + start);
    gain.gain.exponentialRampToValueAtTime(0.2, now + start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + start + 0.18);
    osc.connect(gain).connect(audio.destination);
    osc.start(now + start);
    osc.stop(now + start + 0.2);
  }
}

function alarm() {
  if (!alarmToggle.checked) return;
  document.body.classList.remove("flash");
  void document.body.offsetWidth; // restart the animation
  document.body.classList.add("flash");
  try {
    beep();
  } catch (err) {
    console.warn("no sound:", err);
  }
}

// ---- start --------------------------------------------------------------------------------------------
async function start() {
  try {
    const status = await api("v1/stream");
    $("token-button").hidden = !token;
    showStatus(status); // loads the alerts too
    connect();
  } catch (err) {
    if (err instanceof Unauthorised) return; // the token dialog is open
    setConn("down");
    $("status-text").textContent = "service unreachable: " + err.message + " (retrying)";
    setTimeout(start, 3000);
  }
}

start();
