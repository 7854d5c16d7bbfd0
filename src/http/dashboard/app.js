// smartlink dashboard: reads the admin API with the session cookie, draws the charts as SVG and
// edits rules through PUT requests. No library and nothing loaded from elsewhere.
"use strict";

(function () {
  var SVG = "http://www.w3.org/2000/svg";
  var COLOURS = ["#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed", "#0891b2",
    "#db2777", "#65a30d", "#ea580c", "#4f46e5", "#0d9488", "#9333ea"];

  var state = {
    rules: null,
    version: null,
    report: null,
    sort: { key: "revenue", descending: true }
  };

  function $(id) { return document.getElementById(id); }

  // One colour per offer, the same in every chart: by the offer's place in the rules.
  function colourIndex(offer) {
    var ids = state.rules ? state.rules.offers.map(function (o) { return o.id; }) : [];
    var i = ids.indexOf(offer);
    return (i < 0 ? ids.length : i) % COLOURS.length;
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, children) {
    var node = document.createElementNS(SVG, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.setAttribute("class", value);
      else node.setAttribute(key, value === true ? "" : String(value));
    });
  }

  function append(node, children) {
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // --- API -----------------------------------------------------------------------------------

  function api(method, path, body, ifMatch) {
    var headers = { "Accept": "application/json", "X-Requested-With": "smartlink-dashboard" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (ifMatch) headers["If-Match"] = '"' + ifMatch + '"';
    return fetch(path, {
      method: method,
      headers: headers,
      credentials: "same-origin",
      cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (response) {
      if (response.status === 401) {
        window.location.reload();
        throw new Error("logged out");
      }
      return response.text().then(function (text) {
        var json = null;
        try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
        return { status: response.status, ok: response.ok, body: json, text: text };
      });
    });
  }

  function describe(result) {
    if (result.body && result.body.message) return result.body.message;
    return "HTTP " + result.status + (result.text ? ": " + result.text.slice(0, 200) : "");
  }

  // --- Formatting ----------------------------------------------------------------------------

  function money(v) { return v === null || v === undefined ? "–" : Number(v).toFixed(2); }
  function ratio(v, places) { return v === null || v === undefined ? "–" : Number(v).toFixed(places); }
  function percent(v) { return v === null || v === undefined ? "–" : (Number(v) * 100).toFixed(2) + "%"; }

  var COLUMNS = [
    { key: "offer", format: function (v) { return v === null || v === undefined ? "(none)" : String(v); } },
    { key: "clicks", format: function (v) { return String(v); } },
    { key: "conversions", format: function (v) { return String(v); } },
    { key: "revenue", format: money },
    { key: "pending_revenue", format: money },
    { key: "cost", format: money },
    { key: "profit", format: money },
    { key: "epc", format: function (v) { return ratio(v, 4); } },
    { key: "cr", format: percent },
    { key: "roi", format: function (v) { return v === null ? "–" : ratio(v, 2); } }
  ];

  function today(offsetDays) {
    var d = new Date(Date.now() + (offsetDays || 0) * 86400000);
    return d.toISOString().slice(0, 10);
  }

  // --- Earnings --------------------------------------------------------------------------------

  function reportQuery(groupBy) {
    var q = "group_by=" + encodeURIComponent(groupBy) +
      "&from=" + encodeURIComponent($("from").value) +
      "&to=" + encodeURIComponent($("to").value) +
      "&tz=" + encodeURIComponent($("tz").value || "UTC");
    var campaign = $("campaign-filter").value;
    if (campaign) q += "&campaign=" + encodeURIComponent(campaign);
    return "/api/report?" + q;
  }

  function loadReport() {
    var error = $("report-error");
    return api("GET", reportQuery("offer")).then(function (result) {
      if (!result.ok) {
        error.textContent = "Report: " + describe(result);
        error.hidden = false;
        return;
      }
      error.hidden = true;
      state.report = result.body;
      $("currency").textContent = result.body.currency;
      renderEarnings();
      renderOfferCharts();
    });
  }

  function compare(a, b, key) {
    var x = a[key], y = b[key];
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    if (typeof x === "string" || typeof y === "string") return String(x).localeCompare(String(y));
    return x - y;
  }

  function renderEarnings() {
    var body = $("earnings-body");
    var foot = $("earnings-totals");
    clear(body);
    clear(foot);
    var rows = (state.report.rows || []).slice();
    var key = state.sort.key;
    rows.sort(function (a, b) {
      var c = compare(a, b, key);
      if (a[key] === null || a[key] === undefined || b[key] === null || b[key] === undefined) return c;
      return state.sort.descending ? -c : c;
    });
    if (rows.length === 0) {
      body.appendChild(el("tr", {}, [el("td", { colspan: 10, className: "muted", text: "No clicks in this range." })]));
    }
    rows.forEach(function (row) {
      var offer = row.offer === null || row.offer === undefined ? "" : row.offer;
      body.appendChild(el("tr", { "data-offer": offer, id: "row-" + (offer || "none") },
        COLUMNS.map(function (col) {
          var value = row[col.key];
          return el("td", {
            "data-col": col.key,
            "data-value": value === null || value === undefined ? "" : String(value),
            text: col.format(value)
          });
        })));
    });
    var totals = state.report.totals || {};
    foot.appendChild(el("tr", { id: "row-totals" }, COLUMNS.map(function (col) {
      var value = col.key === "offer" ? "Total" : totals[col.key];
      return el("td", {
        "data-col": col.key,
        "data-value": value === null || value === undefined ? "" : String(value),
        text: col.key === "offer" ? "Total" : col.format(value)
      });
    })));
    document.querySelectorAll("#earnings-table th[data-sort]").forEach(function (th) {
      var sorted = th.getAttribute("data-sort") === key;
      th.setAttribute("aria-sort", sorted ? (state.sort.descending ? "descending" : "ascending") : "none");
    });
  }

  function onSort(event) {
    var th = event.target.closest("th[data-sort]");
    if (!th || !state.report) return;
    var key = th.getAttribute("data-sort");
    if (state.sort.key === key) state.sort.descending = !state.sort.descending;
    else state.sort = { key: key, descending: key !== "offer" };
    renderEarnings();
  }

  // --- Charts ----------------------------------------------------------------------------------

  function empty(container, message, isError) {
    clear(container);
    container.appendChild(el("p", { className: isError ? "error" : "muted", text: message }));
  }

  // Horizontal bars, one per label.
  function barChart(container, items, format) {
    clear(container);
    if (items.length === 0) return empty(container, "No data in this range.");
    var width = 560, row = 26, left = 150, right = 90;
    var height = items.length * row + 8;
    var max = Math.max.apply(null, items.map(function (i) { return Math.max(i.value, 0); })) || 1;
    var chart = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img", className: "bars" });
    items.forEach(function (item, i) {
      var y = 4 + i * row;
      var w = Math.max(0, item.value) / max * (width - left - right);
      chart.appendChild(svg("text", { x: left - 8, y: y + row / 2 + 4, "text-anchor": "end", className: "label", text: item.label }));
      chart.appendChild(svg("rect", { x: left, y: y + 3, width: Math.max(w, 1), height: row - 8, rx: 3, fill: COLOURS[colourIndex(item.label)] }, [
        svg("title", { text: item.label + ": " + format(item.value) })
      ]));
      chart.appendChild(svg("text", { x: left + w + 6, y: y + row / 2 + 4, className: "value", text: format(item.value) }));
    });
    container.appendChild(chart);
  }

  function renderOfferCharts() {
    var rows = (state.report.rows || []).filter(function (r) { return r.clicks > 0 || r.revenue !== 0; });
    var label = function (r) { return r.offer === null || r.offer === undefined ? "(none)" : r.offer; };
    barChart($("chart-revenue"), rows.map(function (r) { return { label: label(r), value: r.revenue }; })
      .sort(function (a, b) { return b.value - a.value; }), money);
    barChart($("chart-epc"), rows.map(function (r) { return { label: label(r), value: r.epc }; })
      .sort(function (a, b) { return b.value - a.value; }), function (v) { return ratio(v, 4); });
  }

  // Clicks as bars (left axis) and revenue as a line (right axis), one step per day.
  function loadDays() {
    var container = $("chart-days");
    return api("GET", reportQuery("day")).then(function (result) {
      if (!result.ok) return empty(container, "Clicks by day are not available: " + describe(result), true);
      var byDay = {};
      (result.body.rows || []).forEach(function (r) {
        if (!r.day) return;
        var d = byDay[r.day] || (byDay[r.day] = { clicks: 0, revenue: 0 });
        d.clicks += r.clicks;
        d.revenue += r.revenue;
      });
      var days = [];
      var from = new Date($("from").value + "T00:00:00Z"), to = new Date($("to").value + "T00:00:00Z");
      for (var t = from.getTime(); t <= to.getTime() && days.length < 400; t += 86400000) {
        var day = new Date(t).toISOString().slice(0, 10);
        days.push({ day: day, clicks: (byDay[day] || {}).clicks || 0, revenue: (byDay[day] || {}).revenue || 0 });
      }
      dayChart(container, days);
    });
  }

  function dayChart(container, days) {
    clear(container);
    if (days.length === 0) return empty(container, "No days in this range.");
    var width = 1300, height = 260, left = 48, right = 60, top = 12, bottom = 36;
    var plotW = width - left - right, plotH = height - top - bottom;
    var maxClicks = Math.max.apply(null, days.map(function (d) { return d.clicks; })) || 1;
    var maxRevenue = Math.max.apply(null, days.map(function (d) { return d.revenue; })) || 1;
    var step = plotW / days.length;
    var chart = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img", className: "days" });
    [0, 0.5, 1].forEach(function (f) {
      var y = top + plotH - f * plotH;
      chart.appendChild(svg("line", { x1: left, x2: left + plotW, y1: y, y2: y, className: "grid" }));
      chart.appendChild(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", className: "axis", text: String(Math.round(maxClicks * f)) }));
      chart.appendChild(svg("text", { x: left + plotW + 6, y: y + 4, className: "axis", text: money(maxRevenue * f) }));
    });
    var points = [];
    days.forEach(function (d, i) {
      var x = left + i * step;
      var h = d.clicks / maxClicks * plotH;
      chart.appendChild(svg("rect", { x: x + step * 0.15, y: top + plotH - h, width: Math.max(step * 0.7, 1), height: h, fill: "#93c5fd" }, [
        svg("title", { text: d.day + ": " + d.clicks + " clicks, " + money(d.revenue) + " revenue" })
      ]));
      points.push((x + step / 2).toFixed(1) + "," + (top + plotH - d.revenue / maxRevenue * plotH).toFixed(1));
      var every = Math.ceil(days.length / 10);
      if (i % every === 0) {
        chart.appendChild(svg("text", { x: x + step / 2, y: height - bottom + 16, "text-anchor": "middle", className: "axis", text: d.day.slice(5) }));
      }
    });
    chart.appendChild(svg("polyline", { points: points.join(" "), fill: "none", stroke: "#16a34a", "stroke-width": 2.5 }));
    points.forEach(function (p) {
      var xy = p.split(",");
      chart.appendChild(svg("circle", { cx: xy[0], cy: xy[1], r: 3, fill: "#16a34a" }));
    });
    var legend = el("p", { className: "legend" }, [
      el("span", { className: "swatch clicks" }), " clicks (left axis)  ",
      el("span", { className: "swatch revenue" }), " revenue (right axis)"
    ]);
    container.appendChild(chart);
    container.appendChild(legend);
  }

  // One 100% stacked bar per segment: the share of residual traffic each fallback offer gets.
  function loadShares() {
    var container = $("chart-shares");
    var campaign = $("shares-campaign").value;
    if (!campaign) return Promise.resolve(empty(container, "No campaign."));
    return api("GET", "/api/allocation?campaign=" + encodeURIComponent(campaign)).then(function (result) {
      if (!result.ok) return empty(container, describe(result), true);
      var c = result.body.campaigns[0];
      clear(container);
      if (!c || c.offers.length === 0) return empty(container, "This campaign has no fallback pool.");
      var rows = [{ segment: "by weight (no evidence yet)", shares: c.weights }].concat(c.segments);
      var width = 1300, row = 26, left = 300;
      var chart = svg("svg", { viewBox: "0 0 " + width + " " + (rows.length * row + 8), role: "img", className: "shares" });
      rows.forEach(function (r, i) {
        var y = 4 + i * row, x = left;
        chart.appendChild(svg("text", { x: left - 8, y: y + row / 2 + 4, "text-anchor": "end", className: "label", text: r.segment }));
        r.shares.forEach(function (share, k) {
          var w = share * (width - left - 10);
          chart.appendChild(svg("rect", { x: x, y: y + 3, width: Math.max(w, 0), height: row - 8, fill: COLOURS[colourIndex(c.offers[k])] }, [
            svg("title", { text: r.segment + " → " + c.offers[k] + ": " + (share * 100).toFixed(1) + "%" })
          ]));
          if (w > 44) {
            chart.appendChild(svg("text", { x: x + w / 2, y: y + row / 2 + 4, "text-anchor": "middle", className: "inbar", text: (share * 100).toFixed(0) + "%" }));
          }
          x += w;
        });
      });
      container.appendChild(chart);
      container.appendChild(el("p", { className: "legend" }, c.offers.map(function (offer, k) {
        return el("span", { className: "legend-item" }, [el("span", { className: "swatch c" + colourIndex(offer) }), " " + offer + "  "]);
      })));
      var note = c.learnt ? "Segments with evidence of their own; others use their parent's shares." :
        "No allocation published yet: traffic splits by weight.";
      if (c.unnamed_segments) note += " " + c.unnamed_segments + " more segment(s) not shown.";
      container.appendChild(el("p", { className: "muted small", text: note }));
    });
  }

  // --- Rule editor -----------------------------------------------------------------------------

  function message(kind, text, errors) {
    var box = $("editor-message");
    clear(box);
    box.className = "message " + kind;
    box.appendChild(el("p", { id: "editor-message-text", text: text }));
    if (errors && errors.length) {
      box.appendChild(el("ul", { id: "editor-errors" }, errors.map(function (e) {
        var where = e.file + (e.line ? ":" + e.line : "");
        var what = [e.item, e.field].filter(Boolean).join(": ");
        return el("li", {}, [el("code", { text: where }), " " + (what ? what + ": " : "") + e.message]);
      })));
    }
    box.hidden = false;
  }

  function loadRules() {
    return api("GET", "/api/rules").then(function (result) {
      if (!result.ok) return message("error", "Rules: " + describe(result));
      state.rules = result.body;
      state.version = result.body.version;
      $("rules-version").textContent = state.version;
      renderOffers();
      renderCampaigns();
      fillCampaignSelects();
    });
  }

  function fillCampaignSelects() {
    var ids = state.rules.campaigns.map(function (c) { return c.id; });
    [["campaign-filter", true], ["shares-campaign", false]].forEach(function (pair) {
      var select = $(pair[0]);
      var current = select.value;
      clear(select);
      if (pair[1]) select.appendChild(el("option", { value: "", text: "all" }));
      ids.forEach(function (id) { select.appendChild(el("option", { value: id, text: id })); });
      if (current && ids.indexOf(current) >= 0) select.value = current;
      else if (!pair[1]) {
        var pooled = state.rules.campaigns.filter(function (c) { return c.fallback.length > 1; })[0];
        if (pooled) select.value = pooled.id;
      }
    });
  }

  function targetingText(conditions) {
    var parts = [];
    ["match", "exclude"].forEach(function (kind) {
      var table = conditions[kind] || {};
      Object.keys(table).forEach(function (dim) {
        parts.push((kind === "exclude" ? "not " : "") + dim + " " + [].concat(table[dim]).join(", "));
      });
    });
    return parts.join("; ") || "everyone";
  }

  function renderOffers() {
    var body = $("offers-body");
    clear(body);
    state.rules.offers.forEach(function (offer) {
      var toggle = el("button", {
        type: "button",
        className: "pause-toggle " + (offer.paused ? "paused" : "live"),
        id: "pause-" + offer.id,
        "data-offer": offer.id,
        text: offer.paused ? "Paused · resume" : "Live · pause"
      });
      toggle.addEventListener("click", function () { togglePause(offer.id); });
      body.appendChild(el("tr", { "data-offer": offer.id }, [
        el("td", { text: offer.id }),
        el("td", { className: "num", text: money(offer.payout) + " " + offer.currency }),
        el("td", { className: "num", text: offer.daily_cap ? offer.daily_cap + " (" + offer.cap_timezone + ")" : "–" }),
        el("td", { text: targetingText(offer) }),
        el("td", { className: "url", text: offer.url }),
        el("td", {}, [toggle])
      ]));
    });
  }

  function copy(value) { return JSON.parse(JSON.stringify(value)); }

  function togglePause(id) {
    var offer = copy(state.rules.offers.filter(function (o) { return o.id === id; })[0]);
    offer.paused = !offer.paused;
    save("/api/offers/" + encodeURIComponent(id), offer,
      "Offer " + id + (offer.paused ? " paused." : " resumed."));
  }

  function routeEditor(campaign, kind, route, index) {
    var key = campaign.id + "-" + kind + "-" + index;
    var targeting = {};
    if (route.match && Object.keys(route.match).length) targeting.match = route.match;
    if (route.exclude && Object.keys(route.exclude).length) targeting.exclude = route.exclude;
    var cells = [el("td", { text: kind === "primary" ? "primary " + (index + 1) : "fallback " + (index + 1) }),
      el("td", { text: route.offer })];
    if (kind === "fallback") {
      cells.push(el("td", {}, [el("input", {
        type: "number", step: "any", min: "0", className: "weight",
        id: "weight-" + campaign.id + "-" + index,
        "data-campaign": campaign.id, "data-index": index,
        value: route.weight, "aria-label": "weight of " + route.offer
      })]));
    } else {
      cells.push(el("td", { className: "muted", text: "–" }));
    }
    var area = el("textarea", {
      className: "targeting", id: "targeting-" + key, rows: 2, spellcheck: "false",
      "data-campaign": campaign.id, "data-kind": kind, "data-index": index,
      "aria-label": "targeting of " + kind + " " + (index + 1)
    });
    area.value = Object.keys(targeting).length ? JSON.stringify(targeting) : "";
    cells.push(el("td", {}, [area]));
    return el("tr", {}, cells);
  }

  function renderCampaigns() {
    var root = $("campaigns");
    clear(root);
    state.rules.campaigns.forEach(function (campaign) {
      var rows = [];
      campaign.primary.forEach(function (p, i) { rows.push(routeEditor(campaign, "primary", p, i)); });
      campaign.fallback.forEach(function (f, i) { rows.push(routeEditor(campaign, "fallback", f, i)); });
      var saveButton = el("button", { type: "button", className: "save-campaign primary-action", id: "save-" + campaign.id, "data-campaign": campaign.id, text: "Save " + campaign.id });
      saveButton.addEventListener("click", function () { saveCampaign(campaign.id); });
      root.appendChild(el("details", { className: "campaign", id: "campaign-" + campaign.id, open: true }, [
        el("summary", {}, [el("strong", { text: campaign.id }),
          el("span", { className: "muted", text: "  source " + campaign.source + " · " + campaign.primary.length + " primary · " + campaign.fallback.length + " fallback" })]),
        rows.length ? el("table", { className: "routes" }, [
          el("thead", {}, [el("tr", {}, ["Route", "Offer", "Weight", "Targeting (JSON)"].map(function (h) { return el("th", { text: h }); }))]),
          el("tbody", {}, rows)
        ]) : el("p", { className: "muted", text: "No primaries or fallbacks: every click goes to the backlink." }),
        el("p", { className: "muted small", text: "Backlink: " + campaign.backlink }),
        saveButton
      ]));
    });
  }

  function saveCampaign(id) {
    var campaign = copy(state.rules.campaigns.filter(function (c) { return c.id === id; })[0]);
    var problems = [];
    document.querySelectorAll("input.weight[data-campaign='" + id + "']").forEach(function (input) {
      var i = Number(input.getAttribute("data-index"));
      campaign.fallback[i].weight = input.value === "" ? null : Number(input.value);
    });
    document.querySelectorAll("textarea.targeting[data-campaign='" + id + "']").forEach(function (area) {
      var route = campaign[area.getAttribute("data-kind")][Number(area.getAttribute("data-index"))];
      var text = area.value.trim();
      var parsed = {};
      if (text) {
        try { parsed = JSON.parse(text); } catch (e) {
          problems.push(area.getAttribute("aria-label") + ": not JSON (" + e.message + ")");
          return;
        }
      }
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        problems.push(area.getAttribute("aria-label") + ": expected an object like {\"match\": {\"country\": [\"US\"]}}");
        return;
      }
      Object.keys(parsed).forEach(function (k) {
        if (k !== "match" && k !== "exclude") problems.push(area.getAttribute("aria-label") + ": unknown key " + k + " (use match and exclude)");
      });
      route.match = parsed.match || {};
      route.exclude = parsed.exclude || {};
    });
    if (problems.length) {
      message("error", "Not saved:", problems.map(function (p) { return { file: "editor", message: p }; }));
      return;
    }
    save("/api/campaigns/" + encodeURIComponent(id), campaign, "Campaign " + id + " saved.");
  }

  function save(path, body, done) {
    message("pending", "Saving…");
    return api("PUT", path, body, state.version).then(function (result) {
      if (result.ok) {
        message("ok", done + " In force now (version " + result.body.version + ", " + result.body.file + ").");
        return loadRules().then(loadShares);
      }
      if (result.status === 422) {
        var errors = (result.body && result.body.errors) || [];
        message("error", "The rules were not changed: " + errors.length + " error(s).", errors);
      } else if (result.status === 412) {
        message("error", "The rules changed since this page loaded (now version " + (result.body && result.body.version) + "). The editor shows them again; redo your change.");
        return loadRules();
      } else if (result.status === 409) {
        message("error", describe(result));
      } else {
        message("error", "Not saved: " + describe(result));
      }
    }).catch(function (e) {
      message("error", "Not saved: " + e.message);
    });
  }

  // --- Start -----------------------------------------------------------------------------------

  function refreshReports() {
    return Promise.all([loadReport(), loadDays(), loadShares()]);
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("from").value = today(-6);
    $("to").value = today(0);
    $("range-form").addEventListener("submit", function (event) {
      event.preventDefault();
      refreshReports();
    });
    $("earnings-table").querySelector("thead").addEventListener("click", onSort);
    $("shares-campaign").addEventListener("change", loadShares);
    $("reload-rules").addEventListener("click", function () {
      $("editor-message").hidden = true;
      loadRules().then(loadShares);
    });
    loadRules().then(refreshReports);
  });
})();
