// lmforge serve's page: a chat/completion playground, the served models and the catalogue.
// Plain DOM code over the server's own API; nothing is fetched from anywhere else.
"use strict";

const $ = (sel) => document.querySelector(sel);
const KEY_STORE = "lmforge.apiKey";
const GROUPS = [
  ["industrial", "Industrial large models (the seed table)"],
  ["lmforge", "Generations of language model that lmforge implements"],
];

const state = {
  models: [],          // /v1/models entries
  conversation: [],    // [{role, content}] of the chat so far (without the system message)
  controller: null,    // AbortController of the request in flight
  catalogue: null,     // /v1/catalogue rows, once loaded
};

// ---------------------------------------------------------------------------------------------
// Small helpers.

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function fmtCount(n) {
  if (n === null || n === undefined) return "—";
  if (n >= 1e9) return (n / 1e9).toFixed(n >= 1e10 ? 0 : 1) + " B";
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + " M";
  if (n >= 1e3) return (n / 1e3).toFixed(n >= 1e4 ? 0 : 1) + " k";
  return String(n);
}

const fmtPpl = (p) => (p === null || p === undefined ? "—" : Number(p).toFixed(2));
const pct = (p) => (p >= 0.995 ? (100 * p).toFixed(0) : (100 * p).toFixed(1)) + "%";
const show = (node, yes) => { node.hidden = !yes; };

function showError(message) {
  $("#error-text").textContent = message;
  show($("#error"), true);
}

function clearError() {
  show($("#error"), false);
}

// ---------------------------------------------------------------------------------------------
// The API: JSON requests with the key, errors as the server words them, SSE streams.

function headers(json) {
  const h = json ? { "Content-Type": "application/json" } : {};
  const key = $("#api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function api(path, body, signal) {
  const res = await fetch(path, {
    method: body ? "POST" : "GET",
    headers: headers(Boolean(body)),
    body: body ? JSON.stringify(body) : undefined,
    signal,
  });
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      const data = await res.json();
      if (data && data.error && data.error.message) message = data.error.message;
    } catch (_) { /* not JSON: keep the status line */ }
    const err = new Error(message);
    err.status = res.status;
    throw err;
  }
  return res;
}

// The objects of a Server-Sent Events response, up to "data: [DONE]".
async function* events(res) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const obj = JSON.parse(data);
      if (obj.error) throw new Error(obj.error.message);
      yield obj;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Tabs.

function switchTab(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    const on = tab.dataset.tab === name;
    tab.classList.toggle("active", on);
    tab.setAttribute("aria-selected", String(on));
  }
  for (const panel of document.querySelectorAll(".panel")) show(panel, panel.dataset.panel === name);
  if (name === "catalogue" && !state.catalogue) loadCatalogue();
}

// ---------------------------------------------------------------------------------------------
// The playground: model, mode, sampling.

const current = () => state.models.find((m) => m.id === $("#model-select").value);
const can = (model, what) => Boolean(model && model.capabilities.includes(what));
const mode = () => ($("#mode-completion").checked ? "completion" : "chat");
// an any-to-any model: it takes images or sound and answers whole, with them
const omni = (model) => can(model, "image-input") || can(model, "speech-input");

async function loadModels() {
  const select = $("#model-select");
  try {
    const data = await (await api("/v1/models")).json();
    state.models = data.data;
  } catch (err) {
    state.models = [];
    select.replaceChildren();
    modelChanged();
    renderModels();
    $("#model-note").textContent = "The models could not be listed.";
    if (err.status === 401) {
      showError(err.message + " (enter the key in the API key field at the top right)");
      $("#api-key").focus();
    } else {
      showError("Could not list the models: " + err.message);
    }
    return;
  }
  const previous = select.value;
  select.replaceChildren(...state.models.map((m) => {
    const writes = can(m, "chat") || can(m, "completions");
    return el("option", { value: m.id, disabled: !writes, text: `${m.id} · ${m.family}${writes ? "" : " (no text generation)"}` });
  }));
  const keep = state.models.find((m) => m.id === previous && (can(m, "chat") || can(m, "completions")));
  const first = keep || state.models.find((m) => can(m, "chat")) || state.models.find((m) => can(m, "completions"));
  if (first) select.value = first.id;
  modelChanged();
  renderModels();
}

function modelChanged() {
  const model = current();
  const chat = can(model, "chat");
  const complete = can(model, "completions");
  $("#mode-chat").disabled = !chat;
  $("#mode-completion").disabled = !complete;
  // a chat model opens in chat mode, a plain LM in completion mode; the radios switch
  if (chat) $("#mode-chat").checked = true;
  else if (complete) $("#mode-completion").checked = true;
  let note = "";
  if (!model) note = "No model is served.";
  else if (!chat && !complete) note = `${model.id} does not generate text (it does: ${model.capabilities.join(", ")}).`;
  else if (omni(model)) note = "An any-to-any model: attach a PNG or a WAV; it answers with text, images or sound (no streaming).";
  else if (can(model, "translation")) note = "An encoder-decoder: it translates the prompt (no streaming).";
  else if (!chat) note = "A plain language model: it continues a prompt.";
  $("#model-note").textContent = note;
  show($("#attach-row"), omni(model));
  show($("#attach-image-row"), can(model, "image-input"));
  show($("#attach-audio-row"), can(model, "speech-input"));
  modeChanged();
}

function modeChanged() {
  const model = current();
  const chat = mode() === "chat";
  show($("#chat-view"), chat);
  show($("#completion-view"), !chat);
  show($("#system-row"), chat);
  show($("#probs-row"), !chat);
  $("#show-probs").disabled = !can(model, "logprobs");
  $("#send").textContent = chat ? "Send" : "Generate";
  $("#new-chat").textContent = chat ? "New chat" : "Clear";
  $("#send").disabled = Boolean(state.controller) || !(can(model, "chat") || can(model, "completions"));
}

function sampling() {
  const out = {
    temperature: parseFloat($("#temperature").value),
    top_p: parseFloat($("#top-p").value),
    top_k: parseInt($("#top-k").value, 10),
    max_tokens: parseInt($("#max-tokens").value, 10),
    seed: parseInt($("#seed").value, 10),
  };
  for (const k of Object.keys(out)) if (Number.isNaN(out[k])) delete out[k];
  return out;
}

function setBusy(busy, status) {
  $("#send").disabled = busy;
  $("#stop").disabled = !busy;
  $("#model-select").disabled = busy;
  $("#status").textContent = status;
  if (!busy) state.controller = null;
}

// Runs one streaming request; onChunk(obj) for each event. Returns "done", "stopped" or "error".
async function run(path, body, onChunk) {
  clearError();
  state.controller = new AbortController();
  setBusy(true, "generating…");
  try {
    const res = await api(path, body, state.controller.signal);
    for await (const chunk of events(res)) onChunk(chunk);
    return "done";
  } catch (err) {
    if (err.name === "AbortError") return "stopped";
    showError(err.message);
    return "error";
  } finally {
    setBusy(false, "");
  }
}

// Runs one request answered whole; its JSON, or null when it failed or was stopped.
async function whole(path, body, status) {
  clearError();
  state.controller = new AbortController();
  setBusy(true, status);
  try {
    return await (await api(path, body, state.controller.signal)).json();
  } catch (err) {
    if (err.name !== "AbortError") showError(err.message);
    return null;
  } finally {
    setBusy(false, "");
  }
}

// ---------------------------------------------------------------------------------------------
// Chat mode.

function bubble(role, text) {
  const empty = $("#messages .empty");
  if (empty) empty.remove();
  const node = el("div", { class: `msg ${role}` }, el("div", { class: "role", text: role }), el("div", { class: "text", text }));
  $("#messages").append(node);
  node.scrollIntoView({ block: "end" });
  return node;
}

// A file's bytes in base64 (what a data URI or an input_audio part holds).
function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(",") + 1));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// The user's turn as OpenAI content parts: the text, the attached PNG and WAV.
async function contentParts(text) {
  const parts = text ? [{ type: "text", text }] : [];
  const image = $("#attach-image").files[0];
  const audio = $("#attach-audio").files[0];
  const kind = image && image.type.startsWith("image/") ? image.type : "image/png";
  if (image) parts.push({ type: "image_url", image_url: { url: `data:${kind};base64,${await base64Of(image)}` } });
  if (audio) parts.push({ type: "input_audio", input_audio: { data: await base64Of(audio), format: "wav" } });
  return parts;
}

// What a reply holds besides text: <img> for each image, <audio controls> for each sound.
function mediaOf(message) {
  const sounds = message.audio ? [].concat(message.audio) : [];
  return [
    ...(message.images || []).map((p) => el("img", { class: "media", src: p.image_url.url, alt: "generated image" })),
    ...sounds.map((a) => el("audio", { class: "media", controls: true, src: `data:audio/wav;base64,${a.data}` })),
  ];
}

// One turn with an any-to-any model: content parts out, text, images and sound back, whole.
async function sendOmni(model) {
  const text = $("#chat-input").value.trim();
  const parts = await contentParts(text);
  if (!parts.length) return;
  const asked = bubble("user", text);
  for (const p of parts) {
    if (p.type === "image_url") asked.append(el("img", { class: "media", src: p.image_url.url, alt: "attached image" }));
    if (p.type === "input_audio") asked.append(el("audio", { class: "media", controls: true, src: `data:audio/wav;base64,${p.input_audio.data}` }));
  }
  const system = $("#system").value.trim();
  const turn = { role: "user", content: parts };
  const messages = [...(system ? [{ role: "system", content: system }] : []), ...state.conversation, turn];
  const data = await whole("/v1/chat/completions", { model: model.id, messages, ...sampling() }, "answering…");
  if (!data) {  // keep the question in the box, as a failed streamed turn does
    asked.remove();
    return;
  }
  $("#chat-input").value = "";
  $("#attach-image").value = "";
  $("#attach-audio").value = "";
  const message = data.choices[0].message;
  const answer = bubble("assistant", message.content);
  answer.append(...mediaOf(message));
  answer.dataset.model = model.id;
  answer.scrollIntoView({ block: "end" });
  state.conversation.push(turn, { role: "assistant", content: message.content });
}

async function sendChat() {
  const model = current();
  if (!model || state.controller) return;
  if (omni(model)) return sendOmni(model);
  const text = $("#chat-input").value.trim();
  if (!text) return;
  $("#chat-input").value = "";
  state.conversation.push({ role: "user", content: text });
  const asked = bubble("user", text);
  const answer = bubble("assistant", "");
  answer.classList.add("streaming");
  const system = $("#system").value.trim();
  const messages = system ? [{ role: "system", content: system }, ...state.conversation] : [...state.conversation];
  let reply = "";
  let finish = null;
  const outcome = await run("/v1/chat/completions", { model: model.id, messages, stream: true, ...sampling() }, (chunk) => {
    const choice = chunk.choices && chunk.choices[0];
    if (!choice) return;
    const piece = choice.delta && choice.delta.content;
    if (piece) {
      reply += piece;
      answer.querySelector(".text").textContent = reply;
      answer.scrollIntoView({ block: "end" });
    }
    if (choice.finish_reason) finish = choice.finish_reason;
  });
  answer.classList.remove("streaming");
  if (!reply) {  // nothing to keep: take the question back
    state.conversation.pop();
    asked.remove();
    answer.remove();
    $("#chat-input").value = text;
    if (outcome === "done") $("#status").textContent = "the model wrote nothing; try again or change the sampling";
    return;
  }
  state.conversation.push({ role: "assistant", content: reply });
  const tag = outcome === "stopped" ? "stopped" : finish === "length" ? "cut at max_tokens" : null;
  $("#status").textContent = outcome === "stopped" ? "stopped" : finish ? `finished: ${finish}` : "";
  if (tag) answer.append(el("div", { class: "tag", text: tag }));
  answer.dataset.model = model.id;
}

function newChat() {
  if (state.controller) state.controller.abort();
  state.conversation = [];
  $("#messages").replaceChildren(el("p", { class: "empty muted", text: "New conversation." }));
  $("#chat-input").focus();
}

// ---------------------------------------------------------------------------------------------
// Completion mode, with token probabilities.

function probColour(p) {
  // red (unlikely) through amber to green (likely), light enough to read text over
  return `hsl(${Math.round(120 * p)}, 75%, 85%)`;
}

function tokenSpan(text, logprobs) {
  const lp = logprobs.token_logprobs[0];
  const p = Math.exp(lp);
  const token = logprobs.tokens[0];
  const tops = Object.entries((logprobs.top_logprobs && logprobs.top_logprobs[0]) || {})
    .sort((a, b) => b[1] - a[1]);
  const span = el("span", { class: "tok", text, "data-p": p.toFixed(4) });
  span.style.background = probColour(p);
  span.title = `${JSON.stringify(token)}: ${pct(p)} (log-prob ${lp.toFixed(3)})\n`
    + tops.map(([t, v]) => `  ${JSON.stringify(t)} ${pct(Math.exp(v))}`).join("\n");
  span.addEventListener("click", () => tokenInfo(token, p, tops));
  return span;
}

function tokenInfo(token, p, tops) {
  const rows = tops.map(([t, v]) => el("tr", { class: t === token ? "chosen" : null },
    el("td", {}, el("code", { text: JSON.stringify(t) })), el("td", { text: pct(Math.exp(v)) })));
  const box = $("#token-info");
  box.replaceChildren(
    el("div", { text: `token ${JSON.stringify(token)}: probability ${pct(p)}` }),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "alternative" }), el("th", { text: "p" }))), el("tbody", {}, ...rows)),
  );
  show(box, true);
}

async function generate() {
  const model = current();
  const prompt = $("#prompt").value;
  if (!prompt || !model || state.controller) return;
  const out = $("#completion-output");
  const written = el("span", { class: "generated" });
  out.replaceChildren(el("span", { class: "prompt-text", text: prompt }), written);
  show($("#token-info"), false);
  show($("#legend"), false);
  const body = { model: model.id, prompt, ...sampling() };
  if (can(model, "translation")) {  // an encoder-decoder answers whole
    const data = await whole("/v1/completions", body, "translating…");
    if (data) out.replaceChildren(el("span", { class: "generated", text: data.choices[0].text }));
    return;
  }
  const probs = $("#show-probs").checked && can(model, "logprobs");
  if (probs) body.logprobs = 5;
  show($("#legend"), probs);
  let finish = null;
  const outcome = await run("/v1/completions", { ...body, stream: true }, (chunk) => {
    const choice = chunk.choices && chunk.choices[0];
    if (!choice) return;
    if (choice.text) {
      written.append(probs && choice.logprobs ? tokenSpan(choice.text, choice.logprobs) : choice.text);
    }
    if (choice.finish_reason) finish = choice.finish_reason;
  });
  $("#status").textContent = outcome === "stopped" ? "stopped" : finish ? `finished: ${finish}` : "";
}

// ---------------------------------------------------------------------------------------------
// Models tab.

function renderModels() {
  const rows = state.models.map((m) => el("tr", { "data-id": m.id, tabindex: "0", onclick: () => modelDetails(m) },
    el("td", {}, el("strong", { text: m.id })),
    el("td", { text: m.family }),
    el("td", { class: "num", text: `${fmtCount(m.parameters)} ${m.parameters_kind === "n-grams" ? "n-grams" : ""}` }),
    el("td", { text: m.corpus || "—" }),
    el("td", { text: m.tokenizer || "—" }),
    el("td", { class: "num", text: fmtPpl(m.perplexity) }),
    el("td", { class: "num", text: m.context_length ?? "—" }),
    el("td", {}, ...m.capabilities.map((c) => el("span", { class: "chip", text: c }))),
  ));
  $("#models-table tbody").replaceChildren(...rows);
}

function modelDetails(model) {
  for (const tr of document.querySelectorAll("#models-table tbody tr")) tr.classList.toggle("selected", tr.dataset.id === model.id);
  const writes = can(model, "chat") || can(model, "completions");
  const value = (k, v) => {
    if (Array.isArray(v)) return v.join(", ");
    if (v === null || v === undefined) return "—";
    if (k === "created") return `${v} (${new Date(v * 1000).toISOString().slice(0, 16).replace("T", " ")} UTC)`;
    return String(v);
  };
  const items = Object.entries(model).map(([k, v]) => [el("dt", { text: k }), el("dd", { text: value(k, v) })]);
  const card = $("#model-details");
  card.replaceChildren(
    el("h3", { text: model.id }),
    el("dl", {}, ...items.flat()),
    el("button", {
      id: "try-model", class: "primary", disabled: !writes,
      text: can(model, "chat") ? "Chat with it" : writes ? "Try it" : "Does not generate text",
      onclick: () => tryModel(model.id),
    }),
  );
  show(card, true);
  card.scrollIntoView({ block: "nearest" });
}

function tryModel(id) {
  $("#model-select").value = id;
  modelChanged();
  switchTab("chat");
  (mode() === "chat" ? $("#chat-input") : $("#prompt")).focus();
}

// ---------------------------------------------------------------------------------------------
// Catalogue tab.

async function loadCatalogue() {
  try {
    state.catalogue = (await (await api("/v1/catalogue")).json()).data;
  } catch (err) {
    showError("Could not load the catalogue: " + err.message);
    return;
  }
  const body = [];
  for (const [group, title] of GROUPS) {
    body.push(el("tr", { class: "group" }, el("th", { colspan: "6", text: title })));
    for (const row of state.catalogue.filter((r) => r.group === group)) {
      body.push(el("tr", { "data-id": row.id },
        el("td", {}, el("strong", { text: row.name })),
        el("td", { text: row.organisation }),
        el("td", { class: "nowrap", text: row.released }),
        el("td", { text: row.parameters_text }),
        el("td", { text: row.modality }),
        el("td", {}, el("button", { class: "details-btn", "data-id": row.id, title: "view details", onclick: () => catalogueDetails(row) },
          el("span", { lang: "zh", text: "查看详情" }), el("span", { class: "en", text: "details" }))),
      ));
    }
  }
  $("#catalogue-table tbody").replaceChildren(...body);
}

function link(url) {
  return el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: url });
}

function catalogueDetails(row) {
  const field = (name, ...value) => [el("dt", { text: name }), el("dd", {}, ...value)];
  const params = [row.parameters_text];
  if (row.parameters) params.push(el("span", { class: "muted", text: ` (${row.parameters.toLocaleString("en")})` }));
  const parts = [
    ...field("What it is", row.summary),
    ...field("Organisation", row.organisation),
    ...field("Modality", row.modality),
    ...field("Kind", row.kind),
    ...field("Released", row.released),
    ...field("Parameters", ...params),
  ];
  if (row.seed_parameters !== null && row.seed_parameters !== undefined) {
    const seed = parseFloat(row.seed_parameters) * 1e8;
    parts.push(...field("Seed table", `${row.seed_parameters} 亿 (× 10⁸)`,
      el("span", { class: "muted", text: Number.isNaN(seed) ? "" : ` = ${fmtCount(seed)} parameters` })));
  }
  if (row.note) parts.push(...field("Note", row.note));
  parts.push(...field("Sources", el("ul", { class: "links" }, ...[row.source, ...(row.see_also || [])].map((u) => el("li", {}, link(u))))));
  const body = [el("dl", {}, ...parts)];
  if (row.how) {
    body.push(el("h3", { text: `With lmforge (family ${row.lmforge_family})` }));
    for (const step of ["train", "evaluate", "serve"]) {
      if (row.how[step]) body.push(el("div", { class: "how" }, el("span", { text: step }), el("pre", { class: `how-${step}`, text: row.how[step] })));
    }
    const local = row.local || [];
    body.push(el("h3", { text: "Served here" }));
    body.push(local.length
      ? el("table", { class: "grid small local" },
        el("thead", {}, el("tr", {}, ...["id", "perplexity", "parameters", "corpus", ""].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...local.map((m) => el("tr", {},
          el("td", { text: m.id }), el("td", { class: "num", text: fmtPpl(m.perplexity) }),
          el("td", { class: "num", text: fmtCount(m.parameters) }), el("td", { text: m.corpus || "—" }),
          el("td", {}, el("button", { class: "link", text: "try it", onclick: () => { $("#details").close(); tryModel(m.id); } })),
        ))))
      : el("p", { class: "muted", text: "No model of this family is served here." }));
  }
  $("#details-title").textContent = row.name;
  $("#details-body").replaceChildren(...body);
  $("#details").showModal();
}

// ---------------------------------------------------------------------------------------------
// Wiring.

function init() {
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => switchTab(tab.dataset.tab));
  $("#model-select").addEventListener("change", modelChanged);
  for (const radio of document.querySelectorAll("input[name=mode]")) radio.addEventListener("change", modeChanged);
  $("#send").addEventListener("click", () => (mode() === "chat" ? sendChat() : generate()));
  $("#stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("#new-chat").addEventListener("click", () => {
    if (mode() === "chat") newChat();
    else {
      $("#completion-output").replaceChildren();
      show($("#token-info"), false);
      show($("#legend"), false);
    }
  });
  $("#chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendChat(); }
  });
  $("#prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); generate(); }
  });
  $("#error-close").addEventListener("click", clearError);
  $("#details-close").addEventListener("click", () => $("#details").close());
  $("#details").addEventListener("click", (e) => { if (e.target === e.currentTarget) e.currentTarget.close(); });
  const key = $("#api-key");
  key.value = localStorage.getItem(KEY_STORE) || "";
  key.addEventListener("change", () => {
    const value = key.value.trim();
    if (value) localStorage.setItem(KEY_STORE, value);
    else localStorage.removeItem(KEY_STORE);
    clearError();
    state.catalogue = null;
    loadModels();
  });
  const start = location.hash.slice(1);
  switchTab(["models", "catalogue"].includes(start) ? start : "chat");
  loadModels();
}

document.addEventListener("DOMContentLoaded", init);
