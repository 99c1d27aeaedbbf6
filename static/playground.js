// The playground: streams chat answers from /playground/api/chat (OpenAI Chat Completions
// events) and renders everything as plain text. History lives in this tab until Clear.
"use strict";

(function () {
  const root = document.getElementById("playground");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const els = {
    model: $("pg-model"), system: $("pg-system"), temperature: $("pg-temperature"),
    maxTokens: $("pg-max-tokens"), message: $("pg-message"), form: $("pg-form"),
    send: $("pg-send"), stop: $("pg-stop"), clear: $("pg-clear"), log: $("pg-log"),
    empty: $("pg-empty"), status: $("pg-status"), balance: $("pg-balance"),
  };
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const STORE = "tollgate.playground.v1";
  let history = [];
  let controller = null;

  const fmt = (n) => Number(n).toLocaleString(undefined, {maximumFractionDigits: 6});

  function bubble(role, text) {
    els.empty.hidden = true;
    const item = document.createElement("article");
    item.className = "msg msg-" + role;
    const who = document.createElement("p");
    who.className = "msg-role";
    who.textContent = role === "user" ? "You" : "Assistant";
    const body = document.createElement("div");
    body.className = "msg-body";
    body.textContent = text || "";
    const meta = document.createElement("p");
    meta.className = "msg-meta";
    item.append(who, body, meta);
    els.log.appendChild(item);
    els.log.scrollTop = els.log.scrollHeight;
    return {item, body, meta};
  }

  function save() {
    try { sessionStorage.setItem(STORE, JSON.stringify(history)); } catch (e) { /* full */ }
  }

  function restore() {
    try { history = JSON.parse(sessionStorage.getItem(STORE) || "[]"); } catch (e) { history = []; }
    if (!Array.isArray(history)) history = [];
    history.forEach((turn) => bubble(turn.role, turn.content));
  }

  async function refreshBalance() {
    try {
      const resp = await fetch(root.dataset.balanceUrl, {headers: {Accept: "application/json"}});
      if (resp.ok) els.balance.textContent = fmt((await resp.json()).data.balance);
    } catch (e) { /* offline: keep the last figure */ }
  }

  function busy(on) {
    els.send.disabled = on;
    els.stop.disabled = !on;
    root.classList.toggle("is-streaming", on);
  }

  function numberOrNull(input) {
    const value = input.value.trim();
    return value === "" ? null : Number(value);
  }

  async function errorMessage(resp) {
    try {
      const body = await resp.json();
      return (body.error && body.error.message) || resp.statusText;
    } catch (e) {
      return "The gateway answered HTTP " + resp.status + ".";
    }
  }

  // Reads an SSE body, calling onEvent(parsed JSON) per data line; resolves at [DONE] or EOF.
  async function readEvents(resp, onEvent) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).trim()).join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        try { onEvent(JSON.parse(data)); } catch (e) { /* not JSON: skip */ }
      }
    }
  }

  async function send(event) {
    event.preventDefault();
    const text = els.message.value.trim();
    if (!text || controller) return;
    history.push({role: "user", content: text});
    bubble("user", text);
    els.message.value = "";
    const answer = bubble("assistant", "");
    answer.item.classList.add("is-pending");
    const payload = {model: els.model.value, system: els.system.value, messages: history,
                     temperature: numberOrNull(els.temperature),
                     max_tokens: numberOrNull(els.maxTokens)};
    controller = new AbortController();
    busy(true);
    els.status.textContent = "Waiting for " + payload.model + "…";
    let output = "", usage = null, credits = null, failure = null, stopped = false;
    try {
      const resp = await fetch(root.dataset.chatUrl, {
        method: "POST", signal: controller.signal, body: JSON.stringify(payload),
        headers: {"Content-Type": "application/json", "X-CSRFToken": csrf,
                  Accept: "text/event-stream"},
      });
      if (!resp.ok) throw new Error(await errorMessage(resp));
      els.status.textContent = "Streaming…";
      await readEvents(resp, (chunk) => {
        if (chunk.error) { failure = chunk.error.message || "The stream failed."; return; }
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && typeof delta.content === "string") {
          output += delta.content;
          answer.body.textContent = output;
          answer.item.classList.remove("is-pending");
          els.log.scrollTop = els.log.scrollHeight;
        }
        if (chunk.usage) usage = chunk.usage;
        if (chunk.credits_consumed !== undefined) credits = chunk.credits_consumed;
      });
    } catch (err) {
      if (err.name === "AbortError") stopped = true; else failure = err.message;
    } finally {
      controller = null;
      busy(false);
      answer.item.classList.remove("is-pending");
    }
    finish(answer, {output, usage, credits, failure, stopped, text});
  }

  function finish(answer, r) {
    if (r.output) {
      history.push({role: "assistant", content: r.output});
    } else if (r.failure || r.stopped) {
      history.pop();  // nothing came back: the question can be asked again
      if (!els.message.value) els.message.value = r.text;
    }
    save();
    const parts = [];
    if (r.failure) {
      answer.item.classList.add("msg-error");
      if (!r.output) answer.body.textContent = r.failure; else parts.push(r.failure);
    }
    if (r.stopped) parts.push("Stopped");
    if (r.credits !== null) parts.push(fmt(r.credits) + (r.credits === 1 ? " credit" : " credits"));
    if (r.usage) parts.push(fmt(r.usage.prompt_tokens) + " in / " + fmt(r.usage.completion_tokens) + " out tokens");
    if (r.stopped && r.credits === null) parts.push("charged for what was generated");
    answer.meta.textContent = parts.join(" · ");
    els.status.textContent = r.failure ? "Failed" : r.stopped ? "Stopped" : "Done";
    refreshBalance();
    setTimeout(refreshBalance, 1500);  // settlement is written just after the stream ends
  }

  els.form.addEventListener("submit", send);
  els.stop.addEventListener("click", () => { if (controller) controller.abort(); });
  els.clear.addEventListener("click", () => {
    if (controller) controller.abort();
    history = [];
    save();
    els.log.querySelectorAll(".msg").forEach((m) => m.remove());
    els.empty.hidden = false;
    els.status.textContent = "";
  });
  els.message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) els.form.requestSubmit();
  });
  restore();
  refreshBalance();
})();
