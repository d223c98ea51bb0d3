// conjure studio: a prompt form over the native jobs API, live progress from its Server-Sent Events, and
// a gallery of the user's jobs. Plain DOM, no framework, no build step, nothing fetched from elsewhere.
import {TERMINAL, h, liveBlock, refusalOf, renderJob} from "./cards.js";

const $ = (sel) => document.querySelector(sel);
const state = {
  config: null,
  models: [],
  jobs: new Map(),         // id -> {job, el}
  streams: new Map(),      // id -> AbortController of its event stream
  waiting: new Set(),      // ids of unfinished jobs beyond MAX_STREAMS, polled until a stream frees up
  editFiles: new Map(),    // id -> {init_image, mask} Files of edit jobs made in this tab (for re-run)
  offset: 0,
  total: 0,
};
const PAGE = 12;
const MAX_STREAMS = 3;       // a browser opens about 6 connections to one server: leave some for images and API
const POLL_MS = 2000;
const SPEC_FIELDS = ["prompt", "negative_prompt", "n", "seed", "steps", "guidance", "scheduler", "size", "model",
                     "strength", "precision", "timeout_s"];

// ---- small helpers -------------------------------------------------------------------------------------

function authHeaders() {
  const key = localStorage.getItem("conjure.key");
  return key ? {Authorization: `Bearer ${key}`} : {};
}

/** The API's error body as one readable line per problem ("n: Input should be ..."). */
function errorText(status, body) {
  const d = body && (body.detail ?? body.error?.message);
  if (Array.isArray(d)) {
    return d.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".") || "request"}: ${e.msg}`).join("\n");
  }
  return d ? String(d) : `the server answered ${status}`;
}

async function api(path, opts = {}) {
  const r = await fetch(path, {...opts, headers: {...authHeaders(), ...(opts.headers || {})}});
  if (r.status === 204) return null;
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const err = new Error(errorText(r.status, body));
    err.status = r.status;
    throw err;
  }
  return body;
}

function announce(text) {
  $("#announce").textContent = text;
}

const randomSeed = () => Math.floor(Math.random() * 1e6);   // short enough to read and type again

// ---- server facts: config, models, readiness -----------------------------------------------------------

async function loadConfig() {
  state.config = await api("/studio/config.json");
  const {limits, schedulers} = state.config;
  $("#prompt").maxLength = limits.prompt_chars;
  $("#negative_prompt").maxLength = limits.prompt_chars;
  $("#n").max = limits.n;
  $("#steps").max = limits.steps;
  $("#guidance").max = limits.guidance;
  $("#seed").max = limits.seed;
  for (const name of schedulers) $("#scheduler").append(h("option", {value: name}, name));
  $("#key-box").hidden = !state.config.require_auth;
  $("#api-key").value = localStorage.getItem("conjure.key") || "";
}

async function loadModels() {
  const sel = $("#model");
  try {
    state.models = (await api("/v1/models")).data;
  } catch (e) {
    state.models = [{id: state.config.default_model, sizes: null}];
  }
  sel.replaceChildren(...state.models.map((m) =>
    h("option", {value: m.id}, m.id === state.config.default_model ? `${m.id} (default)` : m.id)));
  sel.value = state.config.default_model;
  updateSizes();
}

/** The size choices and the "model default" hints follow the chosen model. */
function updateSizes() {
  const model = state.models.find((m) => m.id === $("#model").value);
  const defaults = state.config.model_defaults?.[$("#model").value] || {};
  const hint = (v) => (v === null || v === undefined ? "model default" : `default ${v}`);
  $("#steps").placeholder = hint(defaults.steps);
  $("#guidance").placeholder = hint(defaults.guidance);
  $("#scheduler").options[0].textContent = defaults.scheduler ? `Default (${defaults.scheduler})` : "Model default";
  const sizes = model?.sizes || [256, 512, 768, 1024];
  const sel = $("#size");
  const keep = sel.value;
  sel.replaceChildren(h("option", {value: ""}, defaults.size ? `Default (${defaults.size})` : "Model default"),
                      ...sizes.map((s) => h("option", {value: String(s)}, `${s} × ${s}`)));
  if (sizes.map(String).includes(keep)) sel.value = keep;
}

async function pollReady() {
  const chip = $("#server-status");
  let wait = 4000;
  try {
    const r = await fetch("/readyz");
    const body = await r.json();
    if (r.ok) {
      chip.className = "chip ok";
      chip.textContent = `ready · ${body.workers} worker${body.workers === 1 ? "" : "s"}`;
      wait = 30000;
    } else {
      chip.className = "chip warn";
      chip.textContent = body.status === "starting" ? "warming up the model…" : "job store unavailable";
      chip.title = body.reason || "";
    }
  } catch (e) {
    chip.className = "chip bad";
    chip.textContent = "server unreachable";
  }
  setTimeout(pollReady, wait);
}

// ---- the form ------------------------------------------------------------------------------------------

/** The form as API parameters: empty fields are left out so the model's defaults apply. */
function formParams() {
  const f = $("#create");
  const p = {prompt: f.prompt.value.trim(), negative_prompt: f.negative_prompt.value.trim()};
  const num = (name, parse = Number) => {
    const v = f[name].value.trim();
    if (v !== "") p[name] = parse(v);
  };
  num("n", (v) => parseInt(v, 10));
  if (f.seed.value.trim() === "") f.seed.value = randomSeed();   // shown, so the image can be made again
  num("seed", (v) => parseInt(v, 10));
  num("steps", (v) => parseInt(v, 10));
  num("guidance");
  num("size", (v) => parseInt(v, 10));
  num("timeout_s");
  num("priority", (v) => parseInt(v, 10));
  if (f.scheduler.value) p.scheduler = f.scheduler.value;
  if (f.model.value) p.model = f.model.value;
  p.precision = f.precision.value;
  return p;
}

function editFiles() {
  const init = $("#init_image").files[0];
  const mask = $("#mask").files[0];
  return init ? {init_image: init, mask: mask || null} : null;
}

/** POST a job: JSON to /v1/jobs, or multipart to /v1/jobs/edit when there is an init image. */
async function createJob(params, files) {
  if (!files) return api("/v1/jobs", {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(params)});
  const form = new FormData();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") form.append(k, v);
  form.append("init_image", files.init_image);
  if (files.mask) form.append("mask", files.mask);
  return api("/v1/jobs/edit", {method: "POST", body: form});
}

function showFormError(message) {
  const box = $("#form-error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function submitForm(ev) {
  ev?.preventDefault();
  showFormError("");
  const f = $("#create");
  if (!f.prompt.value.trim()) {
    showFormError("Write a prompt first: what should the image show?");
    f.prompt.focus();
    return;
  }
  if ($("#music").checked) return submitMusic(f);
  const files = editFiles();
  const params = formParams();
  if (files) params.strength = Number(f.strength.value);
  if (!files && $("#mask").files[0]) {
    showFormError("A mask needs an init image to repaint: choose an init image too.");
    return;
  }
  const button = $("#generate");
  button.disabled = true;
  button.textContent = "Submitting…";
  try {
    const job = await submitJob(params, files);
    f.seed.value = "";                     // the next click gets a new seed; this one stays on the card
  } catch (e) {
    showFormError(e.message);
  } finally {
    button.disabled = false;
    button.textContent = "Generate";
  }
}

async function submitMusic(f) {
  const params = {prompt: f.prompt.value.trim(), response_format: $("#audio_format").value};
  if (f.seed.value !== "") params.seed = Number(f.seed.value);
  if ($("#bars").value !== "") params.bars = Number($("#bars").value);
  if ($("#tempo").value !== "") params.tempo = Number($("#tempo").value);
  const button = $("#generate");
  button.disabled = true;
  button.textContent = "Submitting…";
  try {
    await submitJob(params, null, "/v1/music");
    f.seed.value = "";
  } catch (e) {
    showFormError(e.message);
  } finally {
    button.disabled = false;
    button.textContent = "Generate";
  }
}

async function submitJob(params, files, path = null) {
  const job = path ? await api(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(params)})
                   : await createJob(params, files);
  if (files) state.editFiles.set(job.id, files);
  state.total += 1;
  upsertJob(job, {prepend: true, isNew: true});
  if (!TERMINAL.has(job.status)) {
    announce(`Job queued: ${job.spec.prompt}`);
    follow(job.id);
  } else announceEnd(job);
  return job;
}

function previewFile(input, label) {
  const box = $("#edit-previews");
  box.querySelector(`[data-for=${input.id}]`)?.remove();
  const file = input.files[0];
  if (!file) return;
  const url = URL.createObjectURL(file);
  box.append(h("figure", {"data-for": input.id}, h("img", {src: url, alt: `${label}: ${file.name}`}), label));
}

/** Put a job's parameters back into the form (for the user to change and generate again). */
function fillForm(spec) {
  const f = $("#create");
  f.prompt.value = spec.prompt || "";
  f.negative_prompt.value = spec.negative_prompt || "";
  f.n.value = spec.n ?? 1;
  f.seed.value = spec.seed ?? "";
  f.steps.value = spec.steps ?? "";
  f.guidance.value = spec.guidance ?? "";
  f.scheduler.value = spec.scheduler || "";
  if (state.models.some((m) => m.id === spec.model)) f.model.value = spec.model;
  updateSizes();
  f.size.value = spec.size ? String(spec.size) : "";
  f.precision.value = spec.precision || "fp32";
  f.timeout_s.value = spec.timeout_s ?? "";
  f.strength.value = spec.strength ?? 0.75;
  $("#strength-out").value = f.strength.value;
  updateCount();
  f.prompt.focus();
}

function updateCount() {
  const max = $("#prompt").maxLength;
  $("#prompt-count").textContent = `${$("#prompt").value.length} / ${max}`;
}

// ---- job actions ---------------------------------------------------------------------------------------

function specParams(spec, overrides = {}) {
  const p = {};
  for (const k of SPEC_FIELDS) if (spec[k] !== null && spec[k] !== undefined) p[k] = spec[k];
  return {...p, ...overrides};
}

async function again(job, overrides, what) {
  const spec = job.spec;
  const isEdit = Boolean(spec.init_image);
  const files = isEdit ? state.editFiles.get(job.id) : null;
  if (isEdit && !files) {
    fillForm({...spec, ...overrides});
    $("#edit-group").open = true;
    showFormError(`This ${what} edits an image that the page no longer holds: choose the init image (and mask) ` +
                  "again, then press Generate.");
    return;
  }
  const params = specParams(spec, overrides);
  if (!isEdit) delete params.strength;
  try {
    await submitJob(params, files);
  } catch (e) {
    showFormError(e.message);
  }
}

async function cancelJob(job) {
  try {
    await api(`/v1/jobs/${job.id}/cancel`, {method: "POST"});
  } catch (e) {
    showFormError(e.message);
  }
}

async function deleteJob(job) {
  try {
    await api(`/v1/jobs/${job.id}`, {method: "DELETE"});
  } catch (e) {
    if (e.status !== 404) return showFormError(e.message);
  }
  state.streams.get(job.id)?.abort();
  state.jobs.get(job.id)?.el.remove();
  state.jobs.delete(job.id);
  state.total = Math.max(0, state.total - 1);
  updateCounts();
}

function announceEnd(job) {
  const refusal = refusalOf(job);
  const n = job.outputs.length;
  let text = `The job ${job.status}: ${job.error || job.spec.prompt}`;
  if (job.status === "succeeded") text = `Done: ${n} image${n === 1 ? "" : "s"} of ${job.spec.prompt}`;
  else if (job.status === "refused" && refusal) {
    text = `Refused by the content policy: ${refusal.category}, ${refusal.reason}`;
  }
  announce(text);
}

const CARD_ACTIONS = {
  cancel: cancelJob,
  rerun: (job) => again(job, {}, "job"),
  variations: (job) => again(job, {seed: randomSeed()}, "job"),
  edit: (job) => fillForm(job.spec),
  remove: deleteJob,
};

// ---- rendering -----------------------------------------------------------------------------------------

function upsertJob(job, {prepend = false, isNew = false, preview = null} = {}) {
  const old = state.jobs.get(job.id);
  // keep open <details> open across re-renders
  const open = old ? [...old.el.querySelectorAll("details")].map((d) => d.open) : [];
  const el = renderJob(job, {preview: preview ?? old?.preview, isNew: isNew || old?.el.classList.contains("is-new")},
                       CARD_ACTIONS);
  el.querySelectorAll("details").forEach((d, i) => { if (open[i]) d.open = true; });
  if (old) old.el.replaceWith(el);
  else if (prepend) $("#jobs").prepend(el);
  else $("#jobs").append(el);
  state.jobs.set(job.id, {job, el, preview: preview ?? old?.preview});
  updateCounts();
}

function updateCounts() {
  $("#jobs-total").textContent = state.total ? `(${state.total})` : "";
  $("#empty").hidden = state.jobs.size > 0;
  $("#more").hidden = state.offset >= state.total || state.jobs.size >= state.total;
}

// ---- progress: the job's Server-Sent Events, read with fetch so that an API key can be sent -----------

async function follow(id, tries = 0) {
  if (state.streams.has(id)) return;
  if (state.streams.size >= MAX_STREAMS) {
    if (!state.waiting.has(id)) {
      state.waiting.add(id);
      setTimeout(() => pollWaiting(id), POLL_MS);
    }
    return;
  }
  state.waiting.delete(id);
  const ctrl = new AbortController();
  state.streams.set(id, ctrl);
  let finished = false;
  try {
    const r = await fetch(`/v1/jobs/${id}/events`, {headers: authHeaders(), signal: ctrl.signal});
    if (!r.ok) throw new Error(`events: ${r.status}`);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += value.replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        finished = onEvent(id, buf.slice(0, cut)) || finished;
        buf = buf.slice(cut + 2);
      }
    }
  } catch (e) {
    if (ctrl.signal.aborted) return;
  } finally {
    if (state.streams.get(id) === ctrl) state.streams.delete(id);   // not a newer stream for the same job
    const next = state.waiting.values().next().value;
    if (next) follow(next);
  }
  if (!finished && state.jobs.has(id) && tries < 5) {   // the stream broke: read the job, follow again
    setTimeout(async () => {
      try {
        const job = await api(`/v1/jobs/${id}`);
        upsertJob(job);
        if (!TERMINAL.has(job.status)) follow(id, tries + 1);
      } catch (e) { /* deleted meanwhile */ }
    }, 1000 * (tries + 1));
  }
}

/** A job waiting for a free stream: read it now and then, until it ends or a stream takes it over. */
async function pollWaiting(id) {
  if (!state.waiting.has(id) || !state.jobs.has(id)) return state.waiting.delete(id);
  try {
    const job = await api(`/v1/jobs/${id}`);
    upsertJob(job);
    if (TERMINAL.has(job.status)) {
      state.waiting.delete(id);
      return announceEnd(job);
    }
  } catch (e) {
    if (e.status === 404) return state.waiting.delete(id);
  }
  setTimeout(() => pollWaiting(id), POLL_MS);
}

/** One SSE message; returns true when the job is over. */
function onEvent(id, chunk) {
  let event = "message", data = "";
  for (const line of chunk.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  const payload = data ? JSON.parse(data) : {};
  const entry = state.jobs.get(id);
  if (event === "progress" && entry) {
    const job = {...entry.job, status: payload.status, progress: {step: payload.step, total: payload.total}};
    if (TERMINAL.has(job.status)) return false;
    const live = entry.el.querySelector(".live");
    if (job.status === entry.job.status && live) {   // only the progress block changes: focus stays put
      const preview = payload.preview || entry.preview;
      live.replaceWith(liveBlock(job, preview));
      Object.assign(entry, {job, preview});
    } else upsertJob(job, {preview: payload.preview || null});
  } else if (event === "done") {
    upsertJob(payload);
    announceEnd(payload);
    return true;
  } else if (event === "error") {
    entry?.el.remove();
    state.jobs.delete(id);
    return true;
  }
  return false;
}

// ---- the gallery ---------------------------------------------------------------------------------------

async function loadJobs(reset = true) {
  if (reset) {
    for (const c of state.streams.values()) c.abort();
    state.streams.clear();
    state.waiting.clear();
    state.jobs.clear();
    $("#jobs").replaceChildren();
    state.offset = 0;
  }
  try {
    const page = await api(`/v1/jobs?limit=${PAGE}&offset=${state.offset}`);
    state.total = page.total;
    state.offset += page.count;
    for (const job of page.data) {
      upsertJob(job);
      if (!TERMINAL.has(job.status)) follow(job.id);
    }
  } catch (e) {
    showFormError(e.status === 401 ? "This server needs an API key: paste one in the box at the top."
                                   : `Could not list your jobs: ${e.message}`);
  }
  updateCounts();
}

// ---- rate: blind pairwise preference (studies made with `conjure prefer new`) --------------------------

const rate = {study: null, pair: null, skipped: [], busy: false};
const RATE_MAX_SKIPPED = 100;   // the API takes at most this many skip ids
const studyPath = (rest) => `/v1/preference/studies/${encodeURIComponent(rate.study)}${rest}`;

function showRateError(message) {
  $("#rate-error").textContent = message;
  $("#rate-error").hidden = !message;
}

/** The studies the server has; the panel (and its header link) appear only when there is one. */
async function loadStudies() {
  const studies = (await api("/v1/preference/studies")).data;
  $("#rate").hidden = $("#rate-link").hidden = studies.length === 0;
  if (!studies.length) return;
  const sel = $("#rate-study");
  const keep = rate.study;
  sel.replaceChildren(...studies.map((st) =>
    h("option", {value: st.name}, `${st.name} · ${st.contestants.length} contestants, ${st.pairs} pairs`)));
  sel.value = studies.some((st) => st.name === keep) ? keep : studies[0].name;
  await selectStudy(sel.value);
}

async function selectStudy(name) {
  rate.study = name;
  rate.skipped = [];
  showRateError("");
  await Promise.all([nextPair(), loadScores()]);
}

async function nextPair() {
  const query = new URLSearchParams(rate.skipped.map((id) => ["skip", String(id)]));
  const body = await api(studyPath(`/next?${query}`));
  rate.pair = body.pair;
  $("#rate-pair").hidden = !rate.pair;
  $("#rate-done").hidden = Boolean(rate.pair);
  if (!rate.pair) {
    $("#rate-done").textContent = rate.skipped.length
      ? `No more pairs here: you skipped ${rate.skipped.length}. Choose the study again to see them.`
      : "You have rated every pair of this study. Thank you!";
    return;
  }
  $("#rate-prompt").textContent = rate.pair.prompt;
  $("#rate-left-img").src = rate.pair.left_image;
  $("#rate-right-img").src = rate.pair.right_image;
  $("#rate-progress").textContent = `pair ${rate.pair.id} · ${rate.pair.votes} vote${rate.pair.votes === 1 ? "" : "s"} so far`;
}

async function votePair(choice) {
  if (!rate.pair || rate.busy) return;
  rate.busy = true;
  for (const b of document.querySelectorAll(".rate-actions button")) b.disabled = true;
  try {
    await api(studyPath("/votes"), {method: "POST", headers: {"Content-Type": "application/json"},
                                    body: JSON.stringify({pair_id: rate.pair.id, choice})});
    showRateError("");
    announce(`Vote stored: ${choice}.`);
  } catch (e) {
    if (e.status !== 409) showRateError(`The vote was not stored: ${e.message}`);   // 409: rated already
  } finally {
    rate.busy = false;
    for (const b of document.querySelectorAll(".rate-actions button")) b.disabled = false;
  }
  await Promise.all([nextPair(), loadScores()]).catch((e) => showRateError(e.message));
}

function skipPair() {
  if (!rate.pair || rate.busy) return;
  rate.skipped = [...rate.skipped, rate.pair.id].slice(-RATE_MAX_SKIPPED);
  nextPair().catch((e) => showRateError(e.message));
}

async function loadScores() {
  const body = $("#rate-scores tbody");
  let scores;
  try {
    scores = await api(studyPath("/scores?boot=200"));   // after every vote: kept light
  } catch (e) {
    if (e.status !== 409) throw e;
    scores = {contestants: []};   // no votes yet
  }
  const f = (x, d = 2) => x.toFixed(d);
  body.replaceChildren(...scores.contestants.map((c) => h("tr", {},
    h("td", {}, c.label), h("td", {}, f(c.score)), h("td", {}, `[${f(c.ci_low)}, ${f(c.ci_high)}]`),
    h("td", {}, f(c.elo, 0)), h("td", {}, `${c.wins} / ${c.losses} / ${c.ties}`), h("td", {}, c.n))));
  $("#rate-scores").hidden = scores.contestants.length === 0;
  $("#rate-scores-empty").hidden = scores.contestants.length > 0;
}

function startRate() {
  for (const id of ["#rate-left", "#rate-tie", "#rate-right"]) {
    $(id).addEventListener("click", (e) => votePair(e.currentTarget.dataset.choice));
  }
  $("#rate-skip").addEventListener("click", skipPair);
  $("#rate-study").addEventListener("change", (e) => selectStudy(e.target.value).catch((err) => showRateError(err.message)));
  $("#rate").addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.matches("input, select, textarea")) return;
    const choice = {"1": "left", "2": "right", t: "tie"}[e.key.toLowerCase()];
    if (choice) votePair(choice);
    else if (e.key.toLowerCase() === "s") skipPair();
    else return;
    e.preventDefault();
  });
  return loadStudies();
}

// ---- start ---------------------------------------------------------------------------------------------

async function start() {
  const f = $("#create");
  f.addEventListener("submit", submitForm);
  f.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) submitForm(e);
  });
  $("#prompt").addEventListener("input", updateCount);
  $("#model").addEventListener("change", updateSizes);
  $("#seed-random").addEventListener("click", () => { f.seed.value = randomSeed(); });
  $("#strength").addEventListener("input", (e) => { $("#strength-out").value = Number(e.target.value).toFixed(2); });
  $("#init_image").addEventListener("change", (e) => previewFile(e.target, "init image"));
  $("#mask").addEventListener("change", (e) => previewFile(e.target, "mask"));
  $("#edit-clear").addEventListener("click", () => {
    $("#init_image").value = "";
    $("#mask").value = "";
    $("#edit-previews").replaceChildren();
  });
  $("#refresh").addEventListener("click", () => loadJobs(true));
  for (const b of document.querySelectorAll(".examples button")) {
    b.addEventListener("click", () => { f.prompt.value = b.textContent; updateCount(); f.prompt.focus(); });
  }
  $("#more").addEventListener("click", () => loadJobs(false));
  $("#api-key").addEventListener("change", (e) => {
    const key = e.target.value.trim();
    if (key) localStorage.setItem("conjure.key", key);
    else localStorage.removeItem("conjure.key");
    showFormError("");
    loadModels().then(() => loadJobs(true));
    loadStudies().catch(() => {});   // the panel stays as it was; voting shows its own errors
  });
  await loadConfig();
  updateCount();
  pollReady();
  await loadModels();
  await loadJobs(true);
  await startRate().catch((e) => showRateError(`The Rate panel could not load: ${e.message}`));
  document.body.dataset.ready = "true";   // for tests and for the curious: the page has loaded its data
}

start().catch((e) => showFormError(`The studio could not start: ${e.message}`));
