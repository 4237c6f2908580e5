// llmdeck console: small progressive enhancements. Pages work without it where they can.
(function () {
  "use strict";

  const csrf = () => document.body.dataset.csrf || "";

  function localizeTimes(root) {
    root.querySelectorAll("time[data-local]").forEach((el) => {
      const when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      el.textContent = when.toLocaleString(undefined, {
        month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
      });
    });
  }

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (button) {
      const source = document.getElementById(button.dataset.copy);
      const label = button.querySelector("[data-label]") || button;
      try {
        await copyText(source.value || source.textContent);
        label.textContent = "Copied";
      } catch (err) {
        source.select && source.select();
        label.textContent = "Press Ctrl+C";
      }
      setTimeout(() => { label.textContent = "Copy"; }, 2000);
    }
    // Close an open project switcher when clicking elsewhere.
    document.querySelectorAll("details.switcher[open]").forEach((d) => {
      if (!d.contains(event.target)) d.removeAttribute("open");
    });
  });

  // Secrets shown once are selected whole on focus, ready to copy.
  document.addEventListener("focusin", (event) => {
    if (event.target.matches("[data-select-on-focus]")) event.target.select();
  });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      document.querySelectorAll("details.switcher[open]").forEach((d) => {
        d.removeAttribute("open");
        d.querySelector("summary").focus();
      });
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    localizeTimes(document);
    const playground = document.getElementById("playground");
    if (playground) initPlayground(playground);
    const toDataset = document.getElementById("to-dataset");
    if (toDataset) initRowSelection(toDataset);
    const openInPlayground = document.getElementById("open-in-playground");
    if (openInPlayground) initPlaygroundLink(openInPlayground);
  });

  // The prompt page's "try it in the Playground" carries the variables typed beside it.
  function initPlaygroundLink(link) {
    const source = document.getElementById("try-vars");
    if (!source) return;
    const base = link.getAttribute("href");
    const update = () => {
      try {
        const values = JSON.parse(source.value || "{}");
        const filled = Object.values(values).some((v) => v !== "");
        link.setAttribute("href", filled ? `${base}&variables=${encodeURIComponent(JSON.stringify(values))}` : base);
      } catch (err) {
        link.setAttribute("href", base);  // not JSON (yet): open the prompt without values
      }
    };
    source.addEventListener("input", update);
    update();
  }
  document.addEventListener("htmx:afterSwap", (event) => localizeTimes(event.target));
  // Pages whose session ended: htmx follows HX-Redirect; nothing else to do here.

  // Requests explorer: tick rows (or all rows on the page) and add them to a dataset. The
  // table body is replaced while polling, so the selection lives here and is re-applied.
  function initRowSelection(form) {
    const selected = new Set();
    const all = document.getElementById("select-all");
    const button = form.querySelector("#add-to-dataset");
    const count = form.querySelector("#selected-count");
    const boxes = () => [...document.querySelectorAll("input[name=trace_ids][form=to-dataset]")];
    // A page shown again after a refused "Add to dataset" arrives with the ticks it sent.
    boxes().filter((b) => b.checked).forEach((b) => selected.add(b.value));
    form.querySelectorAll("input[data-kept]").forEach((el) => selected.add(el.value));

    function sync() {
      const list = boxes();
      list.forEach((box) => {
        box.checked = selected.has(box.value);
        box.closest("tr").classList.toggle("is-selected", box.checked);
      });
      const ticked = list.filter((box) => box.checked).length;
      all.checked = list.length > 0 && ticked === list.length;
      all.indeterminate = ticked > 0 && ticked < list.length;
      all.disabled = list.length === 0;
      count.textContent = selected.size
        ? `${selected.size} request${selected.size === 1 ? "" : "s"} selected`
        : "Tick requests to add them";
      button.disabled = selected.size === 0;
    }

    document.addEventListener("change", (event) => {
      const box = event.target;
      if (box === all) {
        boxes().forEach((b) => (all.checked ? selected.add(b.value) : selected.delete(b.value)));
      } else if (box.matches("input[name=trace_ids][form=to-dataset]")) {
        if (box.checked) selected.add(box.value); else selected.delete(box.value);
      } else {
        return;
      }
      sync();
    });
    document.addEventListener("htmx:afterSettle", sync);

    form.addEventListener("submit", (event) => {
      if (!selected.size) { event.preventDefault(); return; }
      // Rows that scrolled off the live page are still sent.
      form.querySelectorAll("input[data-kept]").forEach((el) => el.remove());
      const shown = new Set(boxes().map((b) => b.value));
      selected.forEach((id) => {
        if (shown.has(id)) return;
        const kept = document.createElement("input");
        Object.assign(kept, { type: "hidden", name: "trace_ids", value: id });
        kept.dataset.kept = "";
        form.appendChild(kept);
      });
    });
    sync();
  }

  // Playground: compare up to three models, each answer streamed as server-sent events.
  function initPlayground(root) {
    const form = root.querySelector("#composer");
    const picks = [...form.querySelectorAll("input[name=model]")];
    const maxModels = Number(form.dataset.maxModels || 3);
    const list = form.querySelector("#messages");
    const rowTemplate = root.querySelector("#message-row");
    const answers = root.querySelector("#answers");
    const answerTemplate = root.querySelector("#answer-card");
    const sendButton = form.querySelector("#send");
    const problem = form.querySelector("#composer-problem");
    const temperature = form.querySelector("#temperature");
    const temperatureNumber = form.querySelector("#temperature-value");
    let running = [];

    function syncPicks() {
      const chosen = picks.filter((p) => p.checked).length;
      picks.forEach((p) => { p.disabled = !p.checked && chosen >= maxModels; });
      form.querySelector("#model-count").textContent = `${chosen} of ${maxModels} selected`;
    }
    picks.forEach((p) => p.addEventListener("change", syncPicks));
    syncPicks();

    temperature.addEventListener("input", () => { temperatureNumber.value = temperature.value; });
    temperatureNumber.addEventListener("input", () => { temperature.value = temperatureNumber.value; });

    function renumber() {
      [...list.children].forEach((row, i) => {
        row.querySelector("select").setAttribute("aria-label", `Message ${i + 1} role`);
        row.querySelector("textarea").setAttribute("aria-label", `Message ${i + 1}`);
        row.querySelector("button").setAttribute("aria-label", `Remove message ${i + 1}`);
        row.querySelector("button").disabled = list.children.length === 1;
      });
    }
    form.querySelector("#add-message").addEventListener("click", () => {
      const row = rowTemplate.content.firstElementChild.cloneNode(true);
      const last = list.lastElementChild;
      const lastRole = last ? last.querySelector("select").value : "assistant";
      row.querySelector("select").value = lastRole === "user" ? "assistant" : "user";
      list.appendChild(row);
      renumber();
      row.querySelector("textarea").focus();
    });
    list.addEventListener("click", (event) => {
      const remove = event.target.closest("[data-remove]");
      if (!remove || list.children.length === 1) return;
      const row = remove.closest(".msg-row");
      const focusTo = row.previousElementSibling || row.nextElementSibling;
      row.remove();
      renumber();
      focusTo.querySelector("textarea").focus();
    });
    renumber();

    form.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        form.requestSubmit();
      }
    });

    // A registered prompt instead of messages: open the playground on it.
    const usePrompt = form.querySelector("#use-prompt");
    if (usePrompt) {
      usePrompt.addEventListener("click", () => {
        const name = form.querySelector("#prompt-name").value;
        const ref = form.querySelector("#prompt-ref").value.trim();
        window.location.assign(`/playground?prompt=${encodeURIComponent(ref ? `${name}@${ref}` : name)}`);
      });
    }
    const prompt = form.dataset.prompt || "";

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (running.length) { stopAll(); return; }
      const models = picks.filter((p) => p.checked).map((p) => p.value);
      const messages = [...list.children]
        .map((row) => ({ role: row.querySelector("select").value, content: row.querySelector("textarea").value.trim() }))
        .filter((m) => m.content);
      const problems = [];
      // The number inputs carry the schema's min and max; say it beside the field.
      const numbers = [...form.querySelectorAll("input[data-param]")];
      numbers.forEach((input) => showFieldError(input, input.checkValidity() && input.value !== ""
        ? "" : `Enter a number from ${input.min} to ${input.max}.`));
      if (numbers.some((input) => input.getAttribute("aria-invalid"))) problems.push("Fix the settings marked below.");
      if (!models.length) problems.push("Pick at least one model.");
      if (!messages.length && !prompt) problems.push("Write a message to send.");
      problem.textContent = problems.join(" ");
      problem.hidden = !problems.length;
      if (problems.length) return;
      const body = {
        messages,
        temperature: Number(temperatureNumber.value),
        max_tokens: Number(form.querySelector("#max-tokens").value),
      };
      if (prompt) {
        body.prompt = prompt;
        body.variables = Object.fromEntries(
          [...form.querySelectorAll("[data-variable]")].map((el) => [el.dataset.variable, el.value]));
      } else {
        body.system = form.querySelector("#system").value;
      }
      answers.innerHTML = "";
      answers.style.setProperty("--cols", String(models.length));
      running = models.map((model) => stream(model, body));
      setRunning(true);
      Promise.allSettled(running.map((r) => r.done)).then(() => { running = []; setRunning(false); });
    });

    function showFieldError(input, message) {
      const slot = document.getElementById(input.getAttribute("aria-describedby"));
      slot.textContent = message;
      slot.hidden = !message;
      if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    }

    function setRunning(on) {
      sendButton.querySelector("[data-label]").textContent = on ? "Stop" : "Send";
      sendButton.classList.toggle("button-danger", on);
      sendButton.classList.toggle("button-primary", !on);
      answers.setAttribute("aria-busy", on ? "true" : "false");
    }

    function stopAll() { running.forEach((r) => r.controller.abort()); }

    function stream(model, body) {
      const card = answerTemplate.content.firstElementChild.cloneNode(true);
      card.dataset.model = model;
      card.querySelector("[data-field=model]").textContent = model;
      const output = card.querySelector(".answer-output");
      const status = card.querySelector("[data-field=status]");
      const cursor = document.createElement("span");
      cursor.className = "cursor";
      cursor.setAttribute("aria-hidden", "true");
      answers.appendChild(card);
      const text = document.createTextNode("");
      output.append(text, cursor);
      const controller = new AbortController();
      const set = (name, value) => { card.querySelector(`[data-field=${name}]`).textContent = value; };
      let ticking = null;

      async function run() {
        status.textContent = "Sending…";
        let response;
        try {
          response = await fetch("/playground/stream", {
            method: "POST",
            headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf(), Accept: "text/event-stream" },
            body: JSON.stringify({ ...body, model }),
            signal: controller.signal,
          });
        } catch (err) {
          return fail(controller.signal.aborted ? "Stopped." : "Could not reach the server. Is it still running?");
        }
        if (!response.ok) {
          let message = `The server answered ${response.status}.`;
          try {
            const error = (await response.json()).error;
            message = error.message;
            // A setting the server refused: say it beside its field, too.
            const input = error.param && form.querySelector(`input[data-param="${error.param}"]`);
            if (input) {
              showFieldError(input, message);
              message = `${input.labels[0] ? input.labels[0].textContent : error.param}: ${message}`;
            }
          } catch (err) { /* not JSON */ }
          if (response.status === 401) { message = "Your session has ended. Reload the page and sign in again."; }
          return fail(message);
        }
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += decoder.decode(value, { stream: true });
            let cut;
            while ((cut = buffer.indexOf("\n\n")) >= 0) {
              handle(buffer.slice(0, cut));
              buffer = buffer.slice(cut + 2);
            }
          }
        } catch (err) {
          return fail(controller.signal.aborted ? "Stopped." : "The connection was interrupted.");
        }
        cursor.remove();
      }

      function handle(raw) {
        let event = "message";
        let data = "";
        raw.split("\n").forEach((line) => {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        });
        const payload = data ? JSON.parse(data) : {};
        if (event !== "status") stopTicking();
        if (event === "start") {
          card.querySelector(".trace-link").href = `/requests/${payload.trace_id}`;
          status.textContent = "Waiting for the first token…";
        } else if (event === "status") {
          // Slow work on the server (the bundled model loading): say what, and count.
          const since = Date.now();
          const tick = () => { status.textContent = `${payload.text}: ${Math.round((Date.now() - since) / 1000)} s`; };
          tick();
          ticking = setInterval(tick, 1000);
        } else if (event === "delta") {
          status.textContent = "Generating…";
          text.appendData(payload.text);
          card.dataset.chunks = String(Number(card.dataset.chunks || 0) + 1);
        } else if (event === "done") {
          set("tokens", `${payload.input_tokens} in · ${payload.output_tokens} out`);
          set("cost", payload.cost_display);
          set("latency", payload.latency_display);
          set("ttft", payload.ttft_display);
          status.textContent = payload.finish_reason === "length" ? "Stopped at max tokens" : "Done";
          card.querySelector(".trace-link").hidden = false;
          card.dataset.state = "done";
        } else if (event === "error") {
          fail(payload.message);
          if (payload.trace_id) card.querySelector(".trace-link").hidden = false;
        }
      }

      function stopTicking() {
        if (ticking) { clearInterval(ticking); ticking = null; }
      }

      function fail(message) {
        stopTicking();
        cursor.remove();
        const alert = card.querySelector(".answer-error");
        alert.hidden = false;
        alert.querySelector("span").textContent = message;
        status.textContent = "Failed";
        card.dataset.state = "error";
      }

      return { controller, done: run() };
    }
  }
})();
