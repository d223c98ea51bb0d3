// Gallery cards for the studio page: one job as a card with its images, live progress, parameters and safety
// verdicts. Elements are built with h(), which sets text as text, never as HTML.

export const TERMINAL = new Set(["succeeded", "failed", "cancelled", "refused"]);
export const REFUSING = new Set(["block", "refuse"]);

/** h("div", {class: "x", onclick: f}, child, "text") -> element; text is always set as text, never HTML. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function shieldIcon() {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", "M12 2.5 4 5.5v6c0 5 3.4 8.9 8 10 4.6-1.1 8-5 8-10v-6l-8-3zm-1 5h2v6h-2v-6zm0 8h2v2h-2v-2z");
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

function downloadIcon() {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", "M12 4v11m0 0-4.5-4.5M12 15l4.5-4.5M5 19.5h14");
  const stroke = {"fill": "none", "stroke": "currentColor", "stroke-width": "2", "stroke-linecap": "round",
                  "stroke-linejoin": "round"};
  for (const [k, v] of Object.entries(stroke)) {
    path.setAttribute(k, v);
  }
  svg.append(path);
  return svg;
}

export function ago(epochS) {
  const s = Math.max(0, Date.now() / 1000 - epochS);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(epochS * 1000).toLocaleDateString();
}

export function refusalOf(job) {
  return (job.verdicts || []).find((v) => REFUSING.has(v.action)) || null;
}

function verdictPanel(v, title) {
  return h("div", {class: "verdict", role: "group", "aria-label": title},
    h("div", {class: "shield"}, shieldIcon()),
    h("h3", {}, title),
    h("dl", {},
      h("dt", {}, "Category"), h("dd", {class: "v-category"}, v.category || "—"),
      h("dt", {}, "Check"), h("dd", {class: "v-check"}, v.check || "—"),
      h("dt", {}, "Reason"), h("dd", {class: "v-reason"}, v.reason || "—"),
      v.stage ? [h("dt", {}, "Stage"), h("dd", {}, v.stage)] : null,
      v.policy_version ? [h("dt", {}, "Policy"), h("dd", {}, v.policy_version)] : null));
}

export function sizeText(job) {
  if (job.spec.task === "music") return `${job.spec.bars ?? 16} bars`;
  if (job.spec.size) return `${job.spec.size} px`;
  return job.outputs?.length ? `${job.outputs[0].width} px` : "default size";
}

function paramList(job) {
  const s = job.spec;
  const rows = s.task === "music" ? [
    ["Model", s.model], ["Seed", s.seed], ["Bars", s.bars ?? "16"], ["Tempo", s.tempo ?? "from the words"],
    ["Key", s.key ?? "from the words"], ["Meter", s.meter ?? "from the style"],
    ["Instrument", s.instrument ?? "from the words"], ["Format", s.response_format],
    ["Compute", `${job.compute_s.toFixed(2)} s`], ["Attempts", job.attempts], ["Job", job.id],
  ] : [
    ["Model", s.model], ["Size", sizeText(job)], ["Images", s.n], ["Seed", s.seed],
    ["Steps", s.steps ?? "model default"], ["Guidance", s.guidance ?? "model default"],
    ["Scheduler", s.scheduler ?? "model default"], ["Precision", s.precision],
    s.init_image ? ["Strength", s.strength] : null, s.init_image ? ["Mask", s.mask ? "yes" : "no"] : null,
    ["Compute", `${job.compute_s.toFixed(2)} s`], ["Attempts", job.attempts], ["Job", job.id],
  ].filter(Boolean);
  return h("dl", {class: "params"},
    rows.map(([k, v]) => h("div", {class: k === "Job" ? "wide" : null},
      h("dt", {}, k), h("dd", {class: k === "Job" ? "mono" : null}, String(v)))));
}

function verdictTable(job) {
  const vs = job.verdicts || [];
  let image = 0;
  return h("table", {class: "verdicts"},
    h("thead", {}, h("tr", {},
      ["Stage", "Action", "Category", "Check", "Reason"].map((t) => h("th", {scope: "col"}, t)))),
    h("tbody", {}, vs.map((v) => h("tr", {},
      h("td", {}, v.stage === "image" ? `image ${++image}` : v.stage || "—"),
      h("td", {class: `act ${v.action}`}, v.action),
      h("td", {}, v.category || "—"),
      h("td", {}, v.check || "—"),
      h("td", {}, v.reason || "—")))));
}

function safetySummary(job) {
  const vs = job.verdicts || [];
  if (!vs.length) return "no verdicts yet";
  const counts = {};
  for (const v of vs) counts[v.action] = (counts[v.action] || 0) + 1;
  return Object.entries(counts).map(([a, n]) => `${n} ${a}`).join(" · ");
}

function imageGrid(job) {
  return h("div", {class: "images"}, job.outputs.map((o, i) => {
    const name = `conjure-${job.id.slice(0, 8)}-seed${o.seed}.png`;
    const alt = `Image ${i + 1} of “${job.spec.prompt}”, seed ${o.seed}`;
    return h("figure", {class: "out", "data-seed": o.seed},
      h("a", {class: "open", href: o.url, target: "_blank", rel: "noopener",
              "aria-label": `Open image ${i + 1} full size`},
        h("img", {src: o.url, alt, width: o.width, height: o.height, loading: "lazy"})),
      h("figcaption", {},
        h("span", {class: "seed", title: `${o.width} × ${o.height} px`}, `seed ${o.seed}`),
        h("a", {href: o.url, download: name, class: "download", title: "Download PNG",
                "aria-label": `Download image ${i + 1} (seed ${o.seed})`}, downloadIcon(), "PNG")));
  }));
}

function audioBlock(job) {
  return h("div", {class: "audio-out"}, job.outputs.map((o, i) => {
    const ext = o.url.split("?")[0].split(".").pop();
    const name = `conjure-${job.id.slice(0, 8)}-seed${o.seed}.${ext}`;
    if (o.media_type === "audio/midi") {
      return h("a", {href: o.url, download: name, class: "download", title: "Download the MIDI file"},
        downloadIcon(), "MIDI");
    }
    return h("figure", {class: "out audio", "data-seed": o.seed},
      h("audio", {controls: "", preload: "none", src: o.url, "aria-label": `Music for “${job.spec.prompt}”`}),
      h("figcaption", {},
        h("span", {class: "seed"}, `seed ${o.seed} · ${(o.duration_s ?? 0).toFixed(1)} s`),
        h("a", {href: o.url, download: name, class: "download", title: `Download ${ext.toUpperCase()}`},
          downloadIcon(), ext.toUpperCase())));
  }));
}

export function liveBlock(job, preview) {
  const {step, total} = job.progress;
  const label = job.status === "queued" ? "Waiting in the queue…"
    : total ? `Step ${step} of ${total}` : "Starting…";
  return h("div", {class: "live"},
    preview ? h("img", {class: "preview", src: preview, alt: `Preview at step ${step}`})
            : h("div", {class: "preview", role: "img", "aria-label": "No preview yet"}),
    h("div", {class: "bar"},
      h("progress", {max: total || 1, value: total ? step : 0, "aria-label": "Progress"}),
      h("div", {class: "step"}, label)));
}

/** A gallery card for one job; `actions` holds the page's handlers (cancel, rerun, variations, edit, remove). */
export function renderJob(job, live, actions) {
  const s = job.spec;
  const refusal = refusalOf(job);
  const running = !TERMINAL.has(job.status);
  const withheld = (job.verdicts || []).filter((v) => v.stage === "image" && REFUSING.has(v.action));
  const btn = (text, onclick, cls = "ghost") => h("button", {type: "button", class: cls, onclick}, text);
  const refused = job.status === "refused";   // the same prompt would be refused again: edit it instead
  const music = s.task === "music";             // re-run, variations and edit make image jobs
  const buttons = h("div", {class: "job-actions"},
    running ? btn("Cancel", () => actions.cancel(job), "ghost danger") : null,
    refused || music ? null : btn("Re-run", () => actions.rerun(job)),
    refused || music ? null : btn("Variations", () => actions.variations(job)),
    music ? null : btn(refused ? "Edit prompt" : "Edit settings", () => actions.edit(job)),
    running ? null : btn("Delete", () => actions.remove(job), "ghost danger"));
  let body;
  if (running) body = liveBlock(job, live.preview);
  else if (job.status === "refused" && refusal) {
    body = verdictPanel(refusal, refusal.stage === "image" ? "An output was withheld by the content policy"
                                                           : "Refused by the content policy");
  } else if (job.status === "succeeded" && music) {
    body = audioBlock(job);
  } else if (job.status === "succeeded") {
    body = [imageGrid(job), withheld.map((v) => verdictPanel(v, "One image was withheld by the content policy"))];
  } else body = h("div", {class: "error-box"}, job.error || `The job was ${job.status}.`);
  return h("li", {class: `job ${job.status}${live.isNew ? " is-new" : ""}`, id: `job-${job.id}`,
                  "data-status": job.status, "aria-label": `${job.status} job: ${s.prompt}`},
    h("div", {class: "job-head"},
      h("span", {class: `badge ${job.status}`}, job.status),
      h("span", {class: "job-meta"}, `${s.model} · ${sizeText(job)} · `,
        h("time", {datetime: new Date(job.created_at * 1000).toISOString()}, ago(job.created_at)),
        s.init_image ? " · edit" : ""),
      buttons),
    h("p", {class: "prompt"}, s.prompt),
    s.negative_prompt ? h("p", {class: "neg"}, h("b", {}, "Not: "), s.negative_prompt) : null,
    body,
    h("div", {class: "details-row"},
      h("details", {class: "meta params-box"}, h("summary", {}, "Parameters"), paramList(job)),
      h("details", {class: "meta safety-box"},
        h("summary", {}, "Safety: ", h("span", {class: "safety-chip"}, safetySummary(job))), verdictTable(job))));
}
