// The browser dev phone: each tab is one caller; the server plays Twilio's part.
"use strict";

const state = { callId: null, caller: "", digits: "", waiting: false, ended: true };
const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status}`);
  return response.json();
}

function render(call) {
  state.callId = call.id;
  state.waiting = call.waiting_for_digits;
  state.ended = call.ended;
  const list = $("transcript");
  list.replaceChildren(...call.transcript.map((line) => {
    const item = document.createElement("li");
    item.textContent = line;
    if (line.startsWith("***")) item.className = "end";
    return item;
  }));
  $("entered").textContent = state.digits;
  for (const button of document.querySelectorAll(".key, #send, #no-input")) {
    button.disabled = !state.waiting;
  }
  $("hangup").disabled = state.ended;
  $("dial").disabled = !state.ended;
}

async function dial(event) {
  event.preventDefault();
  state.caller = $("other").value.trim() || $("caller").value;
  state.digits = "";
  render(await api("POST", "/dev/phone/calls", { from: state.caller, to: $("line").value }));
  refreshStatus();
}

async function sendDigits(digits) {
  state.digits = "";
  render(await api("POST", `/dev/phone/calls/${state.callId}/keys`, { digits }));
  refreshStatus();
}

function pressKey(key) {
  if (!state.waiting) return;
  state.digits += key;
  $("entered").textContent = state.digits;
  // Twilio submits the Gather as soon as it has all the digits it asked for.
  if (state.digits.replace(/[^0-9]/g, "").length >= 6) sendDigits(state.digits);
}

async function hangUp() {
  render(await api("POST", `/dev/phone/calls/${state.callId}/hangup`, {}));
  refreshStatus();
}

function renderInbox(messages) {
  const inbox = $("inbox");
  if (!messages.length) {
    inbox.innerHTML = '<li class="empty">No messages.</li>';
    return;
  }
  inbox.replaceChildren(...messages.map((message) => {
    const item = document.createElement("li");
    item.textContent = `${message.channel === "call" ? "Call" : "SMS"}: ${message.text}`;
    return item;
  }));
}

function renderAppCode(code) {
  $("app-panel").hidden = !code;
  $("app-code").textContent = code ? `${code.slice(0, 3)} ${code.slice(3)}` : "";
}

function renderConferences(conferences) {
  const panel = $("conferences");
  if (!conferences.length) {
    panel.innerHTML = '<p class="empty">Nobody is in a conference.</p>';
    return;
  }
  panel.replaceChildren(...conferences.map((room) => {
    const box = document.createElement("div");
    box.className = "conference";
    const title = document.createElement("h3");
    title.textContent = room.name;
    const badge = document.createElement("span");
    badge.className = `badge ${room.started ? "started" : "waiting"}`;
    badge.textContent = room.started ? "started" : "waiting for a moderator";
    title.append(badge);
    const members = document.createElement("ul");
    members.append(...room.members.map((member) => {
      const item = document.createElement("li");
      item.textContent = `${member.label} ${member.phone}${member.moderator ? " (moderator)" : ""}`;
      return item;
    }));
    box.append(title, members);
    return box;
  }));
}

async function refreshStatus() {
  const phone = encodeURIComponent(state.caller || $("caller").value);
  const status = await api("GET", `/dev/phone/status?phone=${phone}`);
  renderInbox(status.inbox);
  renderAppCode(status.app_code);
  renderConferences(status.conferences);
  if (state.callId) render(await api("GET", `/dev/phone/calls/${state.callId}`));
}

$("dial-form").addEventListener("submit", dial);
for (const button of document.querySelectorAll(".key")) {
  button.addEventListener("click", () => pressKey(button.dataset.key));
}
$("send").addEventListener("click", () => sendDigits(state.digits));
$("no-input").addEventListener("click", () => sendDigits(""));
$("hangup").addEventListener("click", hangUp);
$("caller").addEventListener("change", refreshStatus);
document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT") return;
  if (/^[0-9*#]$/.test(event.key)) pressKey(event.key);
});
render({ id: null, transcript: [], waiting_for_digits: false, ended: true });
refreshStatus();
setInterval(() => refreshStatus().catch(() => {}), 1000);
