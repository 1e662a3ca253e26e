// llmbill admin UI: tabs over the proxy's own management API. No framework, no build step.
// The session cookie is HTTP-only: this script never sees a credential, only the CSRF token the
// page was rendered with, which it sends as x-llmbill-csrf on every API call.
"use strict";
(() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const CSRF = meta("llmbill-csrf");
  const TODAY = meta("llmbill-today");
  const CREDITS = meta("llmbill-credits") === "customer"; // Lago bills customers: show their prepaid credits
  const $ = (sel, root = document) => root.querySelector(sel);
  const TABS = ["budgets", "customers", "keys", "spend"];
  const COLORS = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9", "#ec4899", "#94a3b8"];

  // ---- DOM and formatting helpers -------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  function usd(value) {
    if (value === null || value === undefined) return "—";
    const n = Number(value);
    if (n === 0) return "$0.00";
    if (Math.abs(n) >= 1) {
      return "$" + n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    }
    let s = n.toPrecision(4);
    s = s.includes("e") ? n.toFixed(12).replace(/0+$/, "") : String(Number(s));
    if (/\.\d$/.test(s)) s += "0";
    return "$" + s;
  }

  const num = (v) => (v === null || v === undefined ? "—" : Number(v).toLocaleString("en-US"));
  const isSet = (v) => v !== null && v !== undefined;

  // A record's own margin (margin_percent in percent, margin_fixed in USD per call), or null.
  function marginText(r) {
    if (!r || (!isSet(r.margin_percent) && !isSet(r.margin_fixed))) return null;
    const parts = [];
    if (isSet(r.margin_percent)) parts.push(`${r.margin_percent}%`);
    if (isSet(r.margin_fixed)) parts.push(`${usd(r.margin_fixed)}/call`);
    return parts.join(" + ");
  }

  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function addDays(day, n) {
    const d = new Date(day + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 120) return `${Math.round(seconds)} s`;
    if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  function cell(label, ...content) {
    return el("td", { "data-label": label }, ...content);
  }

  // ---- the management API -------------------------------------------------------------------
  class ApiError extends Error {
    constructor(message, param, status) {
      super(message);
      this.param = param;
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { "x-llmbill-csrf": CSRF, accept: "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(`The proxy did not answer (${e.message}).`, null, 0);
    }
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const err = (data && data.error) || {};
      if (response.status === 401) $("#session-lost").hidden = false;
      throw new ApiError(err.message || `${method} ${path} failed with HTTP ${response.status}`,
                         err.param || null, response.status);
    }
    return data;
  }

  function panelError(panel, message) {
    const box = $(":scope > .api-error", panel);
    box.textContent = message || "";
    box.hidden = !message;
  }

  async function guarded(panel, work) {
    panelError(panel, "");
    panel.dataset.state = "loading";
    try {
      await work();
    } catch (e) {
      panelError(panel, e.message);
    } finally {
      panel.dataset.state = "ready";
    }
  }

  // ---- forms: checks that match the API's, errors beside the field ---------------------------
  const CHECKS = {
    text: () => null,
    money: (v) => (/^(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(v) ? null
      : "Enter an amount in USD, 0 or more (e.g. 4 or 0.5)."),
    integer: (v) => (/^\d+$/.test(v) ? null : "Enter a whole number, 0 or more."),
    percent: (v) => (/^(\d+(\.\d*)?|\.\d+)$/.test(v) ? null : "Enter a percentage, 0 or more (20 for 20%)."),
    duration: (v) => {
      const m = /^(\d+)\s*(s|m|h|d|w|mo)$/.exec(v);
      return m && Number(m[1]) > 0 ? null : "Use a duration like 30s, 5m, 1h, 1d, 1w or 1mo.";
    },
  };

  function fieldError(form, name, message) {
    const slot = $(`.field-error[data-for="${name}"]`, form);
    if (!slot) return false;
    slot.textContent = message;
    const input = form.elements[name];
    if (input) input.setAttribute("aria-invalid", "true");
    return true;
  }

  function clearErrors(form) {
    for (const slot of form.querySelectorAll(".field-error")) slot.textContent = "";
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    const box = $(".api-error", form);
    box.hidden = true;
    box.textContent = "";
  }

  function formApiError(form, error) {
    if (!(error.param && fieldError(form, error.param, error.message))) {
      const box = $(".api-error", form);
      box.textContent = error.message;
      box.hidden = false;
    }
  }

  // spec: {field: "text" | "money" | "integer" | "duration", ...}; required: [fields].
  // Returns {field: value or null} or null when a check failed (each failure shown at its field).
  function readForm(form, spec, required = []) {
    clearErrors(form);
    const values = {};
    let ok = true;
    for (const [name, kind] of Object.entries(spec)) {
      const raw = form.elements[name].value.trim();
      if (raw === "") {
        if (required.includes(name)) {
          fieldError(form, name, "Required.");
          ok = false;
        }
        values[name] = null;
        continue;
      }
      const problem = CHECKS[kind](raw);
      if (problem) {
        fieldError(form, name, problem);
        ok = false;
      } else {
        values[name] = kind === "integer" ? Number(raw) : raw;
      }
    }
    return ok ? values : null;
  }

  const withoutNulls = (o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null));

  function openDialog(dialog) {
    const form = $("form", dialog);
    form.reset();
    clearErrors(form);
    dialog.showModal();
  }

  for (const dialog of document.querySelectorAll("dialog")) {
    for (const button of dialog.querySelectorAll("[data-close]")) {
      button.addEventListener("click", () => dialog.close());
    }
  }

  function onSubmit(form, handler) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = $('button[type="submit"]', form);
      button.disabled = true;
      try {
        await handler();
      } catch (e) {
        formApiError(form, e);
      } finally {
        button.disabled = false;
      }
    });
  }

  // ---- Budgets ------------------------------------------------------------------------------
  let budgets = [];
  const BUDGET_SPEC = { max_budget: "money", soft_budget: "money", tpm_limit: "integer", rpm_limit: "integer",
                        max_parallel_requests: "integer", budget_duration: "duration", margin_percent: "percent",
                        margin_fixed: "money" };
  let editing = null; // the budget id being edited, or null when creating

  async function loadBudgets() {
    const panel = $("#panel-budgets");
    await guarded(panel, async () => {
      const [list, customers] = await Promise.all([api("GET", "/budget/list"), api("GET", "/customer/list")]);
      budgets = list;
      const now = Date.now();
      const nextReset = {}; // tier → the earliest upcoming reset among its customers' windows
      for (const c of customers) {
        const t = c.litellm_budget_table;
        const at = t && t.budget_id && t.budget_reset_at ? Date.parse(t.budget_reset_at) : NaN;
        if (at > now && !(nextReset[t.budget_id] <= at)) nextReset[t.budget_id] = at;
      }
      const body = $("#budgets-table tbody");
      body.replaceChildren(...list.map((b) => el("tr", { "data-id": b.budget_id },
        cell("Budget ID", el("strong", { text: b.budget_id })),
        cell("Max budget", usd(b.max_budget)),
        cell("Soft budget", usd(b.soft_budget)),
        cell("Margin", el("span", { class: "margin", text: marginText(b) || "—" })),
        cell("TPM", num(b.tpm_limit)),
        cell("RPM", num(b.rpm_limit)),
        cell("Duration", b.budget_duration || "—"),
        cell("Next reset", nextReset[b.budget_id] ? when(nextReset[b.budget_id]) : "—"),
        cell("Customers", num(b.customers)),
        cell("Actions", el("div", { class: "row-actions" },
          el("button", { type: "button", class: "quiet", text: "Edit", onclick: () => editBudget(b) }),
          el("button", { type: "button", class: "danger", text: "Delete", onclick: () => deleteBudget(b) }))))));
      $(".empty", panel).hidden = list.length > 0;
    });
  }

  function editBudget(b) {
    const dialog = $("#budget-dialog");
    const form = $("#budget-form");
    openDialog(dialog);
    editing = b ? b.budget_id : null;
    $("#budget-dialog-title").textContent = b ? `Edit budget ${b.budget_id}` : "Create budget";
    $("#budget-submit").textContent = b ? "Save" : "Create budget";
    form.elements.budget_id.readOnly = Boolean(b);
    if (b) {
      form.elements.budget_id.value = b.budget_id;
      for (const name of Object.keys(BUDGET_SPEC)) {
        form.elements[name].value = b[name] === null || b[name] === undefined ? "" : String(b[name]);
      }
    }
  }

  async function deleteBudget(b) {
    if (!window.confirm(`Delete budget ${b.budget_id}?`)) return;
    const panel = $("#panel-budgets");
    try {
      await api("POST", "/budget/delete", { id: b.budget_id });
      await loadBudgets();
    } catch (e) {
      panelError(panel, e.message);
    }
  }

  $("#budget-create").addEventListener("click", () => editBudget(null));
  onSubmit($("#budget-form"), async () => {
    const form = $("#budget-form");
    const values = readForm(form, { budget_id: "text", ...BUDGET_SPEC }, ["budget_id"]);
    if (!values) return;
    if (values.soft_budget !== null && values.max_budget !== null &&
        Number(values.soft_budget) > Number(values.max_budget)) {
      fieldError(form, "soft_budget", "Must not exceed the max budget.");
      return;
    }
    if (editing) await api("POST", "/budget/update", { ...values, budget_id: editing });
    else await api("POST", "/budget/new", withoutNulls(values));
    $("#budget-dialog").close();
    await loadBudgets();
  });

  // ---- Customers ----------------------------------------------------------------------------
  let customers = [];

  function tierOptions(select, selected, emptyLabel) {
    select.replaceChildren(el("option", { value: "", text: emptyLabel }),
      ...budgets.map((b) => el("option", { value: b.budget_id, text: `${b.budget_id} (${usd(b.max_budget)})`,
                                           selected: b.budget_id === selected })));
  }

  function meter(c) {
    const t = c.litellm_budget_table;
    const max = t ? t.max_budget : null;
    if (max === null || max === undefined) {
      return el("div", { class: "spend" }, el("span", { class: "amount", text: usd(c.spend) }),
                el("span", { class: "muted", text: " · no budget" }));
    }
    const pct = max > 0 ? Math.min(100, (100 * c.spend) / max) : c.spend > 0 ? 100 : 0;
    const soft = t.soft_budget;
    const level = c.spend >= max ? " over" : soft !== null && soft !== undefined && c.spend >= soft ? " warn" : "";
    const fill = el("div", { class: "meter-fill" + level });
    fill.style.width = `${pct}%`;
    return el("div", { class: "spend" },
      el("span", { class: "amount", text: `${usd(c.spend)} of ${usd(max)}` }),
      el("div", { class: "meter", role: "progressbar", "aria-label": `Spend of ${c.user_id}`,
                  "aria-valuemin": 0, "aria-valuemax": max, "aria-valuenow": c.spend }, fill));
  }

  $("#customers-table th.credits-col").hidden = !CREDITS;

  // ---- Prepaid credits: /customer/info's `credits`, read only for the rows in view (it may read
  // the customer's Lago wallets the first time), a few at a time, kept until the next load.
  let creditsSeen = new Map(); // user_id → credits, or null where they do not apply
  let creditQueue = [];
  let creditsInFlight = 0;
  const creditObserver = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      creditObserver.unobserve(e.target);
      creditQueue.push(e.target);
    }
    pumpCredits();
  }) : null;

  function money(value, currency) {
    if (currency === "USD") return usd(value);
    return value === null || value === undefined ? "—" : `${Number(value).toLocaleString("en-US")} ${currency}`;
  }

  function creditsCell(c) {
    const node = el("div", { class: "credits", "data-customer": c.user_id, "data-state": "loading" },
                    el("span", { class: "muted", text: "…" }));
    if (creditsSeen.has(c.user_id)) fillCredits(node, creditsSeen.get(c.user_id));
    else if (creditObserver) creditObserver.observe(node);
    else creditQueue.push(node);
    return node;
  }

  function pumpCredits() {
    while (creditsInFlight < 4 && creditQueue.length) {
      const node = creditQueue.shift();
      creditsInFlight += 1;
      loadCredits(node).finally(() => {
        creditsInFlight -= 1;
        pumpCredits();
      });
    }
  }

  async function loadCredits(node) {
    const id = node.dataset.customer;
    try {
      const info = await api("GET", `/customer/info?end_user_id=${encodeURIComponent(id)}`);
      creditsSeen.set(id, info.credits || null);
      fillCredits(node, info.credits || null);
    } catch (e) {
      node.replaceChildren(el("span", { class: "muted", text: "unavailable", title: e.message }));
      node.dataset.state = "error";
    }
  }

  // available = Lago's settled balance − usage settled and not invoiced yet − holds of calls in flight.
  function fillCredits(node, cr) {
    if (!cr) {
      node.replaceChildren(el("span", { class: "muted", text: "—", title: "Prepaid credits do not apply" }));
      node.dataset.state = "off";
      return;
    }
    const part = (cls, label, value) => el("span", { class: cls, "data-value": value },
                                           `${label} ${money(value, cr.currency)}`);
    const read = cr.balance_age_seconds;
    const parts = [
      el("span", { class: "amount credits-available" + (cr.available <= 0 ? " over" : ""), "data-value": cr.available,
                   text: `${money(cr.available, cr.currency)} available` }),
      el("div", { class: "muted" }, part("credits-lago", "Lago", cr.lago_balance), " − ",
         part("credits-unapplied", "not invoiced", cr.settled_not_invoiced), " − ",
         part("credits-holds", "held", cr.holds)),
      el("div", { class: "muted credits-age", "data-value": read,
                  text: read === null || read === undefined ? "balance never read" : `balance read ${age(read)} ago` }),
    ];
    if (cr.error) parts.push(el("div", { class: "credits-error", text: cr.error })); // this proxy's view only
    node.replaceChildren(...parts);
    node.dataset.state = "ready";
  }

  function renderCustomers() {
    if (creditObserver) creditObserver.disconnect(); // the rows are made anew
    creditQueue = [];
    const q = $("#customer-search").value.trim().toLowerCase();
    const shown = customers.filter((c) => !q || c.user_id.toLowerCase().includes(q) ||
                                           (c.alias || "").toLowerCase().includes(q));
    $("#customers-table tbody").replaceChildren(...shown.map((c) => {
      const t = c.litellm_budget_table;
      const tier = t && t.budget_id ? t.budget_id : t && t.max_budget !== null ? "own budget" : "—";
      return el("tr", { "data-id": c.user_id, class: c.blocked ? "blocked" : null },
        cell("Customer", el("strong", { text: c.user_id }), c.alias ? el("div", { class: "muted", text: c.alias }) : null),
        cell("Tier", el("span", { class: "tier", text: tier })),
        cell("Margin", customerMargin(c)),
        cell("Spend vs budget", meter(c)),
        CREDITS ? cell("Prepaid credits", creditsCell(c)) : null,
        cell("Status", el("span", { class: c.blocked ? "badge bad" : "badge ok", text: c.blocked ? "blocked" : "active" })),
        cell("Actions", el("div", { class: "row-actions" },
          el("button", { type: "button", class: "quiet", text: "Tier…", onclick: () => chooseTier(c) }),
          el("button", { type: "button", class: "quiet", text: "Margin…", onclick: () => editMargin(c) }),
          el("button", { type: "button", class: c.blocked ? "quiet" : "danger", text: c.blocked ? "Unblock" : "Block",
                         onclick: () => setBlocked(c, !c.blocked) }))));
    }));
    $("#panel-customers .empty").hidden = shown.length > 0;
    pumpCredits(); // without IntersectionObserver every row's credits are queued
  }

  // The customer's own margin, else its tier's (shown as inherited), else none set here.
  function customerMargin(c) {
    const own = marginText(c);
    if (own) return el("span", { class: "margin", text: own });
    const t = c.litellm_budget_table;
    const tier = t && t.budget_id ? budgets.find((b) => b.budget_id === t.budget_id) : null;
    const inherited = marginText(tier);
    return inherited ? el("span", { class: "margin muted", text: `${inherited} (tier)` })
                     : el("span", { class: "margin muted", text: "—" });
  }

  let marginFor = null;
  function editMargin(c) {
    marginFor = c.user_id;
    const form = $("#margin-form");
    openDialog($("#margin-dialog"));
    $("#margin-customer").textContent = c.user_id;
    for (const name of ["margin_percent", "margin_fixed"]) form.elements[name].value = isSet(c[name]) ? String(c[name]) : "";
  }

  onSubmit($("#margin-form"), async () => {
    const values = readForm($("#margin-form"), { margin_percent: "percent", margin_fixed: "money" });
    if (!values) return;
    await api("POST", "/customer/update", { user_id: marginFor, ...values }); // empty → null: no own margin
    $("#margin-dialog").close();
    await loadCustomers();
  });

  async function loadCustomers() {
    await guarded($("#panel-customers"), async () => {
      [customers, budgets] = await Promise.all([api("GET", "/customer/list"), api("GET", "/budget/list")]);
      creditsSeen = new Map(); // read again: a refresh shows the balances as they are now
      renderCustomers();
    });
  }

  async function setBlocked(c, blocked) {
    try {
      await api("POST", blocked ? "/customer/block" : "/customer/unblock", { user_ids: [c.user_id] });
      await loadCustomers();
    } catch (e) {
      panelError($("#panel-customers"), e.message);
    }
  }

  let tierFor = null;
  function chooseTier(c) {
    tierFor = c.user_id;
    openDialog($("#tier-dialog"));
    $("#tier-customer").textContent = c.user_id;
    const t = c.litellm_budget_table;
    tierOptions($("#tier-select"), t ? t.budget_id : null, "— no tier —");
  }

  onSubmit($("#tier-form"), async () => {
    const tier = $("#tier-select").value || null;
    await api("POST", "/customer/update", tier ? { user_id: tierFor, budget_id: tier, max_budget: null }
                                               : { user_id: tierFor, budget_id: null });
    $("#tier-dialog").close();
    await loadCustomers();
  });

  $("#customer-create").addEventListener("click", async () => {
    openDialog($("#customer-dialog"));
    tierOptions($("#customer-tier"), null, "— none —");
  });
  $("#customer-search").addEventListener("input", renderCustomers);
  $("#customers-refresh").addEventListener("click", loadCustomers);
  onSubmit($("#customer-form"), async () => {
    const form = $("#customer-form");
    const values = readForm(form, { user_id: "text", alias: "text", budget_id: "text", max_budget: "money" },
                            ["user_id"]);
    if (!values) return;
    if (values.budget_id && values.max_budget !== null) {
      fieldError(form, "max_budget", "Choose a pricing tier or an own max budget, not both.");
      return;
    }
    await api("POST", "/customer/new", withoutNulls(values));
    $("#customer-dialog").close();
    await loadCustomers();
  });

  // ---- Keys ---------------------------------------------------------------------------------
  let keys = [];
  let keysTotal = 0;

  function renderKeys() {
    const q = $("#key-search").value.trim().toLowerCase();
    const hit = (v) => (v || "").toLowerCase().includes(q);
    const shown = keys.filter((k) => !q || hit(k.key_alias) || hit(k.team_id) || hit(k.user_id));
    $("#keys-table tbody").replaceChildren(...shown.map((k) => el("tr", { "data-id": k.token, "data-alias": k.key_alias },
      cell("Alias", el("strong", { text: k.key_alias || "—" })),
      cell("Key", el("code", { text: k.key_name || "" })),
      cell("Team", k.team_id || "—"),
      cell("User", k.user_id || "—"),
      cell("Spend", usd(k.spend)),
      cell("Budget", usd(k.max_budget)),
      cell("Expires", k.expires ? when(k.expires) : "never"),
      cell("Actions", el("button", { type: "button", class: "danger", text: "Revoke", onclick: () => revoke(k) })))));
    const empty = $("#panel-keys .empty");
    empty.hidden = shown.length > 0;
    if (keysTotal > keys.length) empty.textContent = `Showing the first ${keys.length} of ${keysTotal} keys.`;
  }

  async function loadKeys() {
    await guarded($("#panel-keys"), async () => {
      const page = await api("GET", "/key/list?size=1000");
      keys = page.keys;
      keysTotal = page.total_count;
      renderKeys();
    });
  }

  async function revoke(k) {
    if (!window.confirm(`Revoke key ${k.key_alias || k.key_name}? Calls with it stop at once.`)) return;
    try {
      await api("POST", "/key/delete", { keys: [k.token] });
      await loadKeys();
    } catch (e) {
      panelError($("#panel-keys"), e.message);
    }
  }

  function hideNewKey() {
    $("#new-key-value").textContent = "";
    $("#new-key-copied").textContent = "";
    $("#new-key").hidden = true;
  }

  $("#key-create").addEventListener("click", () => openDialog($("#key-dialog")));
  $("#key-search").addEventListener("input", renderKeys);
  $("#keys-refresh").addEventListener("click", loadKeys);
  $("#new-key-done").addEventListener("click", hideNewKey);
  $("#new-key-copy").addEventListener("click", async () => {
    const text = $("#new-key-value").textContent;
    let copied = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        copied = true;
      }
    } catch (e) {
      copied = false;
    }
    if (!copied) { // select it, so the operator can copy by hand
      const range = document.createRange();
      range.selectNodeContents($("#new-key-value"));
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
    }
    $("#new-key-copied").textContent = copied ? "Copied to the clipboard." : "Selected: copy it with Ctrl+C.";
  });
  onSubmit($("#key-form"), async () => {
    const form = $("#key-form");
    const values = readForm(form, { key_alias: "text", team_id: "text", user_id: "text", max_budget: "money",
                                    duration: "duration", models: "text" });
    if (!values) return;
    const body = withoutNulls(values);
    if (body.models) body.models = body.models.split(",").map((m) => m.trim()).filter(Boolean);
    const made = await api("POST", "/key/generate", body);
    $("#key-dialog").close();
    $("#new-key-value").textContent = made.key;
    $("#new-key-copied").textContent = "";
    $("#new-key").hidden = false;
    await loadKeys();
  });

  // ---- Spend --------------------------------------------------------------------------------
  const GROUPS = { model: ["models", "model", "(no model)"], team: ["teams", "team_name", "(no team)"],
                   customer: ["customers", "customer", "(no customer)"] };
  let lastChart = null;

  function niceMax(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    for (const c of children) node.append(c);
    return node;
  }

  function drawChart(days, series) {
    lastChart = [days, series];
    const box = $("#spend-chart");
    const W = Math.max(280, box.clientWidth || 600);
    const H = W < 520 ? 200 : 260;
    const m = { l: 62, r: 8, t: 10, b: 24 };
    const pw = W - m.l - m.r;
    const ph = H - m.t - m.b;
    const totals = days.map((_, i) => series.reduce((s, x) => s + x.values[i], 0));
    const max = Math.max(0, ...totals);
    const top = max > 0 ? niceMax(max) : 1;
    const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart-svg",
                              "aria-label": "Spend per day over the last 30 days" });
    for (const f of [0, 0.5, 1]) {
      const y = m.t + ph - f * ph;
      root.append(svg("line", { x1: m.l, x2: W - m.r, y1: y, y2: y, class: "grid" }));
      root.append(svg("text", { x: m.l - 6, y: y + 4, "text-anchor": "end", class: "axis" },
                      max > 0 ? usd(f * top) : f === 0 ? "$0" : ""));
    }
    const step = pw / days.length;
    const bw = Math.max(2, step * 0.72);
    const every = W < 520 ? 10 : 5;
    days.forEach((day, i) => {
      let y = m.t + ph;
      const x = m.l + i * step + (step - bw) / 2;
      series.forEach((s) => {
        const v = s.values[i];
        if (!(v > 0)) return;
        const h = Math.max(1, (v / top) * ph);
        y -= h;
        root.append(svg("rect", { x, y, width: bw, height: h, fill: s.color, class: "bar" },
                        svg("title", {}, `${day} · ${s.name}: ${usd(v)}`)));
      });
      if ((days.length - 1 - i) % every === 0) { // label today and every 5th (10th) day before it
        const last = i === days.length - 1;
        root.append(svg("text", { x: last ? x + bw : x + bw / 2, y: H - 6, "text-anchor": last ? "end" : "middle",
                                  class: "axis" }, day.slice(5)));
      }
    });
    if (max === 0) {
      root.append(svg("text", { x: m.l + pw / 2, y: m.t + ph / 2, "text-anchor": "middle", class: "axis" },
                      "No spend in these 30 days"));
    }
    box.replaceChildren(root);
  }

  function seriesOf(report, group, days) {
    const [listField, nameField, none] = GROUPS[group];
    const index = Object.fromEntries(days.map((d, i) => [d, i]));
    const byName = new Map();
    for (const day of report) {
      const i = index[day.group_by_day];
      if (i === undefined) continue;
      for (const g of day[listField]) {
        const name = g[nameField] || none;
        if (!byName.has(name)) byName.set(name, new Array(days.length).fill(0));
        byName.get(name)[i] += Number(g.total_spend);
      }
    }
    const all = [...byName.entries()].map(([name, values]) => ({ name, values, total: values.reduce((a, b) => a + b, 0) }))
      .sort((a, b) => b.total - a.total);
    const top = all.slice(0, COLORS.length - 1);
    const rest = all.slice(COLORS.length - 1);
    if (rest.length) {
      const values = days.map((_, i) => rest.reduce((s, x) => s + x.values[i], 0));
      top.push({ name: `${rest.length} others`, values, total: values.reduce((a, b) => a + b, 0) });
    }
    top.forEach((s, i) => { s.color = COLORS[i]; });
    return top;
  }

  function renderTopCustomers(report) {
    const totals = new Map();
    for (const day of report) {
      for (const g of day.customers) {
        if (!g.customer) continue;
        const t = totals.get(g.customer) || { spend: 0, calls: 0 };
        t.spend += Number(g.total_spend);
        t.calls += g.requests;
        totals.set(g.customer, t);
      }
    }
    const top = [...totals.entries()].sort((a, b) => b[1].spend - a[1].spend).slice(0, 10);
    $("#top-customers tbody").replaceChildren(...top.map(([name, t]) => el("tr", { "data-id": name },
      cell("Customer", el("strong", { text: name })), cell("Spend", usd(t.spend)), cell("Calls", num(t.calls)))));
    $("#panel-spend .columns .empty").hidden = top.length > 0;
  }

  function renderPipeline(health) {
    const b = health.billing || {};
    const rows = [["status", "Status", health.status], ["db", "Database", health.db]];
    let dead = 0;
    if (!b.enabled) rows.push(["billing", "Billing", "off (no 'lago' callback)"]);
    else {
      // dead_letters: waiting in every process's spool slot; dead_lettered: this process's count so far.
      dead = b.dead_letters !== undefined ? b.dead_letters : b.dead_lettered;
      const deadAge = dead && b.oldest_dead_letter_age_s ? ` (oldest ${age(b.oldest_dead_letter_age_s)})` : "";
      rows.push(["sink", "Sink", b.sink], ["delivered", "Delivered", num(b.delivered)],
                ["pending", "Pending", num(b.pending)], ["dead_lettered", "Dead-lettered", num(dead) + deadAge],
                ["oldest_pending", "Oldest pending", b.pending ? age(b.oldest_pending_age_s) : "—"],
                ["spool_bytes", "Spool", `${num(b.spool_bytes)} bytes`]);
      if (b.held_codes && b.held_codes.length) {
        rows.push(["held_codes", "Held codes", `${b.held_codes.join(", ")} (not a billable metric in Lago)`]);
      }
      if (b.held_subscriptions && b.held_subscriptions.length) {
        rows.push(["held_subscriptions", "Held billed ids",
                   `${b.held_subscriptions.join(", ")} (no active Lago subscription)`]);
      }
      if (b.last_error) rows.push(["last_error", "Last error", b.last_error]);
    }
    rows.push(["flush_failures", "Spend flush failures", num(health.spend_flush_failures)]);
    const bad = { status: health.status !== "healthy", dead_lettered: Boolean(dead), held_codes: true, held_subscriptions: true,
                  last_error: true, flush_failures: health.spend_flush_failures > 0 };
    $("#pipeline").replaceChildren(...rows.flatMap(([key, label, value]) => [
      el("dt", { text: label }), el("dd", { "data-key": key, class: bad[key] ? "bad" : null, text: String(value) })]));
  }

  async function loadSpend() {
    await guarded($("#panel-spend"), async () => {
      const group = $("#spend-group").value;
      const days = Array.from({ length: 30 }, (_, i) => addDays(TODAY, i - 29));
      const range = `start_date=${days[0]}&end_date=${TODAY}`;
      const health = fetch("/health/readiness", { headers: { accept: "application/json" } }).then((r) => r.json());
      const [report, byCustomer] = await Promise.all([
        api("GET", `/global/spend/report?${range}&group_by=${group}`),
        group === "customer" ? null : api("GET", `/global/spend/report?${range}&group_by=customer`)]);
      const series = seriesOf(report, group, days);
      drawChart(days, series);
      $("#spend-total").textContent = usd(series.reduce((s, x) => s + x.total, 0));
      $("#spend-legend").replaceChildren(...series.map((s) => {
        const swatch = el("span", { class: "swatch" });
        swatch.style.background = s.color;
        return el("li", {}, swatch, s.name, el("span", { class: "muted", text: ` ${usd(s.total)}` }));
      }));
      renderTopCustomers(byCustomer || report);
      renderPipeline(await health);
    });
  }

  $("#spend-group").addEventListener("change", loadSpend);
  $("#spend-refresh").addEventListener("click", loadSpend);
  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (lastChart && !$("#panel-spend").hidden) drawChart(...lastChart); }, 150);
  });

  // ---- tabs and sign-out --------------------------------------------------------------------
  const LOADERS = { budgets: loadBudgets, customers: loadCustomers, keys: loadKeys, spend: loadSpend };

  function show(tab) {
    if (!TABS.includes(tab)) tab = "budgets";
    for (const t of TABS) {
      $(`#panel-${t}`).hidden = t !== tab;
      $(`#tab-${t}`).setAttribute("aria-selected", String(t === tab));
    }
    if (tab !== "keys") hideNewKey(); // a raw key is not left on screen
    LOADERS[tab]();
  }

  $("#sign-out").addEventListener("click", async () => {
    try {
      await api("POST", "/ui/logout");
    } finally {
      window.location.assign("/ui");
    }
  });
  if (window.location.search) window.history.replaceState(null, "", "/ui" + window.location.hash); // ?signed_in=1
  window.addEventListener("hashchange", () => show(window.location.hash.slice(1)));
  show(window.location.hash.slice(1));
})();
