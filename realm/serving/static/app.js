// realm ask page: every string from the server is inserted as text (textContent / text nodes), never parsed as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("ask-form");
  const question = $("question");
  const kInput = $("k");
  const button = $("ask");
  const status = $("status");
  const result = $("result");

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // The block text with [start, end) wrapped in <mark>, built from text nodes only.
  function highlighted(text, start, end) {
    const p = el("p", "block-text");
    if (Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= text.length) {
      p.appendChild(document.createTextNode(text.slice(0, start)));
      p.appendChild(el("mark", "answer-span", text.slice(start, end)));
      p.appendChild(document.createTextNode(text.slice(end)));
    } else {
      p.textContent = text;
    }
    return p;
  }

  function showError(message) {
    status.textContent = message;
    status.className = "error";
  }

  function render(data) {
    $("answer").textContent = data.answer === null ? "(no answer: nothing readable was retrieved)" : data.answer;
    $("answer-meta").textContent =
      (data.score === null ? "" : "score " + data.score.toFixed(3) + " · ") +
      "index v" + data.index_version + " · top-" + data.k + " · " + Math.round(data.latency_ms) + " ms";
    const list = $("evidence");
    list.replaceChildren();
    for (const e of data.evidence) {
      const li = el("li", "evidence" + (e.answer_start !== null ? " has-answer" : ""));
      const head = el("div", "evidence-head");
      head.appendChild(el("span", "title", e.title));
      head.appendChild(el("span", "doc-id", e.doc_id));
      if (e.answer_start !== null) head.appendChild(el("span", "badge", "answer"));
      li.appendChild(head);
      const prob = typeof e.retrieval_prob === "number" ? e.retrieval_prob : 0;
      const barRow = el("div", "prob");
      const bar = el("div", "bar");
      const fill = el("div", "fill");
      fill.style.width = Math.max(0, Math.min(100, prob * 100)).toFixed(1) + "%";
      bar.appendChild(fill);
      bar.setAttribute("role", "meter");
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-valuemax", "1");
      bar.setAttribute("aria-valuenow", String(prob));
      bar.setAttribute("aria-label", "retrieval probability");
      barRow.appendChild(bar);
      barRow.appendChild(el("span", "prob-value", "p = " + prob.toFixed(3)));
      li.appendChild(barRow);
      li.appendChild(highlighted(e.text, e.answer_start, e.answer_end));
      list.appendChild(li);
    }
    result.hidden = false;
  }

  async function ask(event) {
    event.preventDefault();
    const q = question.value;
    if (!q.trim()) {
      showError("Type a question first.");
      return;
    }
    const body = { question: q };
    if (kInput.value !== "") body.k = Number(kInput.value);
    button.disabled = true;
    status.className = "";
    status.textContent = "Thinking…";
    try {
      const resp = await fetch("/ask", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      let data = null;
      try { data = await resp.json(); } catch (_) { /* not JSON */ }
      if (!resp.ok) {
        showError((data && data.error) ? data.error : "Request failed (" + resp.status + ")");
        return;
      }
      status.textContent = "";
      render(data);
    } catch (err) {
      showError("Could not reach the server: " + err);
    } finally {
      button.disabled = false;
    }
  }

  async function loadInfo() {
    try {
      const resp = await fetch("/stats");
      if (!resp.ok) return;
      const s = await resp.json();
      $("index-info").textContent = "index v" + s.index_version + " · " + s.docs + " documents, " +
        s.blocks + " blocks";
      if (s.limits) {
        question.maxLength = s.limits.max_question_chars;
        kInput.max = String(s.limits.max_k);
        kInput.placeholder = String(s.limits.default_k);
      }
    } catch (_) { /* the footer stays empty */ }
  }

  form.addEventListener("submit", ask);
  loadInfo();
})();
