// How the dashboard draws what the API answers. Every value from the
// network (names, tags, images, logs) is a peer's or a job's words: it
// goes into the page as text (textContent), never as markup.
"use strict";

/** What an approval lets run, as `iris policy` says it. */
function mayRun(command) {
  if (!command || command.match === "any") return "ANY command in the image (the whole image)";
  const words = command.argv.join(" ");
  if (command.match === "prefix") return `${words} ...`;
  return words ? `only ${words}` : "only the image's own command";
}

/** An element with attributes and children (strings become text). */
function el(tag, attrs, ...children) {
  const node = tag === "svg" || tag === "circle" || tag === "line" || tag === "text" || tag === "g" || tag === "title"
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces a table body's rows; `empty` says what no row means. */
function fillRows(table, rows, columns, empty) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
  if (rows.length === 0) body.append(el("tr", {}, el("td", { class: "empty", colspan: columns }, empty)));
}

function stateBadge(state) {
  return el("span", { class: `state ${state}` }, state.replace(/_/g, " "));
}

function when(ms) {
  if (!ms) return "";
  const date = new Date(ms);
  return date.toLocaleString(undefined, { hour12: false });
}

function seconds(startMs, endMs) {
  if (!startMs) return "";
  const end = endMs || Date.now();
  return `${((end - startMs) / 1000).toFixed(1)} s`;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

function shortId(id) {
  return id.length > 12 ? id.slice(0, 12) : id;
}

const views = {
  /** The map: the nodes on a circle, this node first, coloured by state;
   * a dashed line to a node this one reaches only through a relay. */
  map(svg, nodes) {
    const radius = nodes.length > 1 ? 115 : 0;
    const spots = nodes.map((node, i) => {
      const angle = (2 * Math.PI * i) / nodes.length - Math.PI / 2;
      return { node, x: radius * Math.cos(angle), y: radius * Math.sin(angle) };
    });
    const lines = spots.filter((s) => !s.node.self).map((s) =>
      el("line", { x1: spots[0].x, y1: spots[0].y, x2: s.x, y2: s.y, class: s.node.relayed ? "relayed" : "" }));
    const dots = spots.map(({ node, x, y }) => el("g", { "data-node": node.name, "data-state": node.state },
      el("circle", { class: `node ${node.state}${node.self ? " self" : ""}`, cx: x, cy: y, r: 16 },
        el("title", {}, `${node.name}: ${node.state}`)),
      el("text", { x, y: y + 30 }, node.name)));
    svg.replaceChildren(...lines, ...dots);
  },

  nodes(table, nodes) {
    const rows = nodes.map((node) => el("tr", { "data-node": node.name, "data-state": node.state },
      el("td", {}, node.name, node.self ? el("span", { class: "muted" }, " (this node)") : null),
      el("td", {}, node.relay ? `${node.role}, relay` : node.role),
      el("td", { class: "node-state" }, stateBadge(node.state),
        node.relayed ? el("span", { class: "muted", title: "reached through a relay" }, " relayed") : null),
      el("td", {}, node.tags.map((t) => el("span", { class: "tag" }, t))),
      el("td", {}, (node.datasets || []).map((d) => el("span", {
        class: "tag", "data-dataset": d.name,
        title: `~${d.rows} rows: ${d.schema.map((c) => `${c.name} (${c.type})`).join(", ")}`,
      }, d.name))),
      el("td", {}, node.images.flatMap((image) => image.tags).map((t) => el("span", { class: "tag" }, t))),
      el("td", {}, node.executor.state)));
    fillRows(table, rows, 7, "This node is in no network yet: create or join one with `iris network`.");
  },

  jobs(table, jobs, selected, onSelect) {
    const rows = jobs.map((job) => {
      const tasks = Object.values(job.tasks);
      const ended = tasks.filter((t) => !["queued", "running", "awaiting_approval"].includes(t.state)).length;
      return el("tr", {
        class: `clickable${job.id === selected ? " selected" : ""}`,
        "data-job": job.id, "data-state": job.state, onclick: () => onSelect(job.id),
      },
      el("td", {}, el("code", {}, shortId(job.id))),
      el("td", {}, job.request.image),
      el("td", {}, job.request.argv.join(" ")),
      el("td", {}, stateBadge(job.state)),
      el("td", {}, `${ended}/${tasks.length} ended`),
      el("td", {}, when(job.created_ms)));
    });
    fillRows(table, rows, 6, "No job yet.");
  },

  /** One job: its tasks, and the logs the nodes' policies let out. */
  jobDetail(root, job, logs) {
    if (!job) { root.replaceChildren(); return; }
    const logsByNode = new Map((logs || []).map((l) => [l.node, l]));
    const tasks = Object.values(job.tasks).map((task) => {
      const log = logsByNode.get(task.node);
      let output = el("span", { class: "muted" }, "no output yet");
      if (log && log.withheld) output = el("span", { class: "muted" }, `withheld: ${log.withheld}`);
      else if (log && (log.stdout || log.stderr)) output = el("pre", {}, log.stdout + log.stderr);
      return el("tr", { "data-task": task.node, "data-state": task.state },
        el("td", {}, task.node),
        el("td", {}, stateBadge(task.state)),
        el("td", {}, task.exit_code ?? ""),
        el("td", {}, seconds(task.started_ms, task.finished_ms)),
        el("td", {}, task.held ? el("span", { class: "muted" }, task.held) : task.outputs.join(", "),
          task.error ? el("div", { class: "error" }, task.error) : null),
        el("td", {}, output));
    });
    const table = el("table", { id: "tasks" },
      el("thead", {}, el("tr", {}, ["Node", "State", "Exit", "Duration", "Outputs", "Logs"].map((h) => el("th", {}, h)))),
      el("tbody", {}, tasks));
    root.replaceChildren(el("h2", {}, `Job ${job.id}`), table);
  },

  approvals(table, approvals, decide) {
    const rows = approvals.map((a) => el("tr", { "data-approval": a.id },
      el("td", {}, el("code", {}, shortId(a.id))),
      el("td", {}, a.requester_name || a.requester),
      el("td", {}, a.image, a.image_id ? el("div", { class: "muted" }, shortId(a.image_id.replace("sha256:", ""))) : null),
      el("td", {}, a.argv.join(" ")),
      el("td", {}, `${a.memory_mb} MiB, ${a.cpus} CPU, ${a.timeout_secs} s, network ${a.network || "none"}`),
      el("td", {}, when(a.requested_ms)),
      el("td", {},
        el("button", { type: "button", "data-approve": a.id, onclick: () => decide("approvals", a.id, "approve") }, "Approve"),
        " ",
        el("button", { type: "button", class: "deny", "data-deny": a.id, onclick: () => decide("approvals", a.id, "deny") }, "Deny"))));
    fillRows(table, rows, 7, "Nothing waits for your approval.");
  },

  releases(table, releases, decide) {
    const rows = releases.map((r) => el("tr", { "data-release": r.job_id },
      el("td", {}, el("code", {}, shortId(r.job_id))),
      el("td", {}, r.requester_name || r.requester),
      el("td", {}, r.image),
      el("td", {}, r.files.concat(r.unnamed || []).join(", ")),
      el("td", {}, bytes(r.bytes)),
      el("td", {},
        el("button", { type: "button", onclick: () => decide("releases", r.job_id, "approve") }, "Release"),
        " ",
        el("button", { type: "button", class: "deny", onclick: () => decide("releases", r.job_id, "deny") }, "Deny"))));
    fillRows(table, rows, 6, "No result is held.");
  },

  policy(table, policy) {
    const { recognised, budgets, ...settings } = policy;
    const rows = Object.entries(settings).map(([key, value]) => el("tr", {},
      el("th", {}, key),
      el("td", {}, Array.isArray(value)
        ? (value.length ? value.map((a) => el("div", {}, `${a.name}: ${mayRun(a.command)} `,
            a.dataset ? `(dataset ${a.dataset}) ` : "", el("span", { class: "muted" }, a.digest))) : "none")
        : String(value))));
    table.tBodies[0].replaceChildren(...rows);
  },

  /** The members to recognise as co-participants of secure sums, and
   * those recognised (a recognised site that left stays listed). */
  sites(table, policy, nodes, recognise) {
    const known = new Map(policy.recognised.map((k) => [k.peer_id, k]));
    const members = nodes.filter((n) => !n.self).map((n) => ({ name: n.name, peer_id: n.peer_id }));
    for (const k of policy.recognised) {
      if (!members.some((m) => m.peer_id === k.peer_id)) members.push(k);
    }
    const rows = members.map((m) => {
      const site = known.get(m.peer_id);
      return el("tr", { "data-site": m.name },
        el("td", {}, m.name),
        el("td", {}, el("span", { class: "muted" }, shortId(m.peer_id))),
        el("td", {}, site ? `yes, as ${site.name}` : "no"),
        el("td", {}, site
          ? el("button", { type: "button", class: "deny", "data-forget": m.name, onclick: () => recognise(site.peer_id, false) }, "Forget")
          : el("button", { type: "button", "data-recognise": m.name, onclick: () => recognise(m.name, true) }, "Recognise")));
    });
    fillRows(table, rows, 4, "No other member yet.");
  },

  /** Each dataset's privacy budget: what it is, spent and left. */
  budgets(table, budgets) {
    const rows = budgets.map((b) => el("tr", { "data-budget": b.dataset },
      el("td", {}, b.dataset),
      el("td", {}, String(b.epsilon)),
      el("td", {}, b.delta.toExponential()),
      el("td", {}, b.spent_epsilon.toFixed(3)),
      el("td", {}, b.left_epsilon.toFixed(3))));
    fillRows(table, rows, 5, "No dataset yet.");
  },

  audit(state, table, view) {
    state.replaceChildren(view.verified
      ? el("span", { class: "verified", "data-verified": "true" }, `✔ the chain verifies: ${view.entries} entries`)
      : el("span", { class: "broken", "data-verified": "false" }, `✘ the chain does NOT verify: ${view.problem}`),
    view.root ? el("span", { class: "muted" }, ` — root ${shortId(view.root)}`) : null);
    const rows = view.recent.slice().reverse().map((entry) => {
      const { type, job_id: job, ...rest } = entry.event;
      const detail = Object.entries(rest).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(" ") : v}`).join(", ");
      return el("tr", {},
        el("td", {}, entry.seq),
        el("td", {}, when(entry.at_ms)),
        el("td", {}, type.replace(/_/g, " ")),
        el("td", {}, job ? el("code", {}, shortId(job)) : ""),
        el("td", {}, detail));
    });
    fillRows(table, rows, 5, "The log is empty.");
  },

  transfers(table, transfers) {
    const rows = [...transfers.values()].map((t) => {
      const share = t.total ? Math.min(100, (100 * t.bytes) / t.total) : 100;
      return el("tr", { "data-transfer": t.path },
        el("td", {}, t.path),
        el("td", {}, el("progress", { max: 100, value: share.toFixed(1) }), ` ${share.toFixed(0)}%`),
        el("td", {}, `${bytes(t.bytes)} of ${bytes(t.total)}`),
        el("td", {}, when(t.at_ms)));
    });
    table.tBodies[0].replaceChildren(...rows);
  },
};
