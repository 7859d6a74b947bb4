// The dashboard: logs in, follows the node's events, and keeps each page
// current by asking the same REST API the CLI uses. Drawing is views.js's.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  page: "network",
  selectedJob: null,
  transfers: new Map(),
  events: null,
  timers: new Map(),
  /** When the audit log was last read: verifying it reads the whole file. */
  auditAt: 0,
};

/** The audit log is read again at most this often, unless asked. */
const AUDIT_EVERY_MS = 10000;

/** Calls the API; the session cookie goes along (same origin only). */
async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 && path !== "/v1/session") {
    showLogin();
    throw new Error("logged out");
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error((data && data.error) || `${response.status} ${response.statusText}`);
  return data;
}

function showError(error) {
  if (error && error.message === "logged out") return;
  const banner = $("error");
  banner.textContent = error ? String(error.message || error) : "";
  banner.hidden = !error;
}

/** Runs `task` at most once per `ms`, the last call winning. */
function soon(name, task, ms = 150) {
  if (state.timers.has(name)) return;
  state.timers.set(name, setTimeout(() => {
    state.timers.delete(name);
    task().catch(showError);
  }, ms));
}

// Logging in and out.

function showLogin(message) {
  if (state.events) { state.events.close(); state.events = null; }
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api("POST", "/v1/session", { token: $("token").value.trim() });
    $("token").value = "";
    await start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});

$("logout").addEventListener("click", async () => {
  await api("POST", "/v1/session/logout").catch(() => {});
  showLogin("Logged out.");
});

// Pages.

function showPage() {
  const page = (location.hash || "#network").slice(1);
  state.page = ["network", "jobs", "owner", "transfers"].includes(page) ? page : "network";
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== `page-${state.page}`;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("current", link.dataset.page === state.page);
  refreshPage().catch(showError);
}

window.addEventListener("hashchange", showPage);

async function refreshPage() {
  if (state.page === "network") await refreshNodes();
  if (state.page === "jobs") await refreshJobs();
  if (state.page === "owner") await refreshOwner(true);
  if (state.page === "transfers") views.transfers($("transfers"), state.transfers);
}

async function refreshNodes() {
  const nodes = await api("GET", "/v1/nodes").catch((error) => {
    if (error.message.includes("not in a network") || error.message.includes("no network")) return [];
    throw error;
  });
  nodes.sort((a, b) => (b.self - a.self) || a.name.localeCompare(b.name));
  views.map($("map"), nodes);
  views.nodes($("nodes"), nodes);
}

async function refreshJobs() {
  const jobs = await api("GET", "/v1/jobs");
  jobs.sort((a, b) => b.created_ms - a.created_ms);
  views.jobs($("jobs"), jobs, state.selectedJob, selectJob);
  const job = jobs.find((j) => j.id === state.selectedJob);
  const logs = job ? await api("GET", `/v1/jobs/${encodeURIComponent(job.id)}/logs`).catch(() => []) : [];
  views.jobDetail($("job-detail"), job, logs);
}

function selectJob(id) {
  state.selectedJob = id;
  refreshJobs().catch(showError);
}

/** The owner's page; the audit log only when `force`d or now and then. */
async function refreshOwner(force) {
  const readAudit = force === true || Date.now() - state.auditAt > AUDIT_EVERY_MS;
  const [approvals, releases, policy, budgets, nodes, audit] = await Promise.all([
    api("GET", "/v1/approvals"),
    api("GET", "/v1/releases"),
    api("GET", "/v1/policy"),
    api("GET", "/v1/policy/budgets"),
    api("GET", "/v1/nodes").catch(() => []),
    readAudit ? api("GET", "/v1/audit?last=100") : null,
  ]);
  showPending(approvals.length + releases.length);
  views.approvals($("approvals"), approvals, decide);
  views.releases($("releases"), releases, decide);
  views.policy($("policy"), policy);
  views.sites($("sites"), policy, nodes, recognise);
  views.budgets($("budgets"), budgets);
  if (audit) {
    state.auditAt = Date.now();
    views.audit($("audit-state"), $("audit"), audit);
  }
}

/** Recognises a member (by name) as a co-participant of secure sums, or
 * forgets a recognised site (by peer id). */
async function recognise(node, yes) {
  try {
    await api("POST", yes ? "/v1/policy/sites" : "/v1/policy/sites/forget", { node });
    showError(null);
  } catch (error) {
    showError(error);
  }
  await refreshOwner(true).catch(showError);
}

function showPending(count) {
  const badge = $("pending-count");
  badge.textContent = String(count);
  badge.hidden = count === 0;
}

/** Approves or denies a pending task (`approvals`) or held result (`releases`). */
async function decide(kind, id, verdict) {
  try {
    const path = `/v1/${kind}/${encodeURIComponent(id)}/${verdict}`;
    const body = kind === "releases" && verdict === "approve" ? undefined : {};
    await api("POST", path, body);
    showError(null);
  } catch (error) {
    showError(error);
  }
  await refreshOwner(true).catch(showError);
}

$("job-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const command = form.argv.value.trim();
  const request = {
    image: form.image.value.trim(),
    // A JSON array keeps spaces inside arguments; otherwise words.
    argv: command.startsWith("[") ? JSON.parse(command) : command.split(/\s+/),
    on: form.on.value.trim() || "all",
  };
  try {
    const job = await api("POST", "/v1/jobs", request);
    state.selectedJob = job.id;
    showError(null);
    await refreshJobs();
  } catch (error) {
    showError(error);
  }
});

// Live updates: the event stream, and a slower poll for what has no event.

const NODE_EVENTS = ["joined", "alive", "suspect", "gone", "left", "removed",
  "network_created", "network_joined", "network_left", "image_loaded", "audit_rewritten"];
const OWNER_EVENTS = ["approval_requested", "release_held"];

function follow() {
  if (state.events) state.events.close();
  const events = new EventSource("/v1/events");
  state.events = events;
  events.onopen = () => { $("live").textContent = "live"; $("live").classList.add("on"); };
  events.onerror = () => {
    $("live").textContent = "reconnecting";
    $("live").classList.remove("on");
    // A stream refused for want of a session does not come back by itself.
    if (events.readyState === EventSource.CLOSED) api("GET", "/v1/status").then(follow).catch(() => {});
  };
  for (const name of NODE_EVENTS) events.addEventListener(name, () => soon("nodes", refreshNodes, 50));
  for (const name of OWNER_EVENTS) events.addEventListener(name, () => soon("owner", refreshOwner));
  events.addEventListener("job_finished", () => soon("jobs", refreshJobs));
  events.addEventListener("awaiting_approval", () => soon("jobs", refreshJobs));
  events.addEventListener("transfer", (message) => {
    const transfer = JSON.parse(message.data);
    state.transfers.set(transfer.path, transfer);
    $("no-transfers").hidden = true;
    if (state.page === "transfers") views.transfers($("transfers"), state.transfers);
  });
}

setInterval(() => {
  if ($("app").hidden) return;
  if (state.page === "jobs") refreshJobs().catch(showError);
  if (state.page === "owner") refreshOwner().catch(showError);
  if (state.page === "network") refreshNodes().catch(showError);
}, 2000);

async function start() {
  const status = await api("GET", "/v1/status");
  $("login").hidden = true;
  $("app").hidden = false;
  $("node-name").textContent = status.name;
  $("network-name").textContent = status.network
    ? `${status.role} of network ${status.network.name}`
    : "in no network";
  follow();
  showPage();
  refreshOwner().catch(() => {});
}

start().catch((error) => {
  if (error.message !== "logged out") showLogin(error.message);
});
