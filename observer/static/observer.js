/* thermos_observer pages: list refresh, charts, process timeline, time travel, log follow.
 *
 * Hand-written, no framework and no network beyond this observer. Data from the server is put
 * into the page with textContent / setAttribute only; the one exception is HTML fragments the
 * server rendered itself (Jinja autoescaped), which replace a container wholesale.
 */
(function () {
  "use strict";

  var SVGNS = "http://www.w3.org/2000/svg";

  // ---------------------------------------------------------------- formatting

  function fmtBytes(n) {
    if (n === null || n === undefined || n < 0 || isNaN(n)) return "–";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(n >= 100 ? 0 : 1)) + " " + units[i];
  }

  function fmtCpu(c) {
    if (c === null || c === undefined || isNaN(c)) return "–";
    return c.toFixed(c >= 10 ? 1 : 2);
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function fmtTime(ms) {
    if (!ms) return "–";
    var d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function fmtClock(ms, withSeconds, withMillis) {
    var d = new Date(ms);
    var text = pad(d.getHours()) + ":" + pad(d.getMinutes()) + (withSeconds ? ":" + pad(d.getSeconds()) : "");
    return withMillis ? text + "." + String(d.getMilliseconds() + 1000).slice(1) : text;
  }

  function fmtDuration(secs) {
    if (secs === null || secs === undefined || isNaN(secs)) return "–";
    if (secs < 1) return Math.round(secs * 1000) + " ms";
    if (secs < 60) return secs.toFixed(secs < 10 ? 1 : 0) + " s";
    var m = Math.floor(secs / 60), s = Math.floor(secs % 60);
    if (m < 60) return m + "m " + pad(s) + "s";
    var h = Math.floor(m / 60);
    if (h < 48) return h + "h " + pad(m % 60) + "m";
    return Math.floor(h / 24) + "d " + (h % 24) + "h";
  }

  function fmtPrecise(ms) { return ms ? fmtTime(ms) + "." + String(new Date(ms).getMilliseconds() + 1000).slice(1) : "–"; }

  function fmtAge(ms) { return fmtDuration(Math.max(0, (Date.now() - ms) / 1000)) + " ago"; }

  // ---------------------------------------------------------------- DOM helpers

  function svg(tag, attrs, parent) {
    var node = document.createElementNS(SVGNS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function svgText(x, y, text, attrs, parent) {
    var node = svg("text", Object.assign({x: x, y: y}, attrs || {}), parent);
    node.textContent = text;
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function getJSON(url) {
    return fetch(url, {cache: "no-store", headers: {"Accept": "application/json"}}).then(function (r) {
      if (!r.ok) throw new Error(url + ": HTTP " + r.status);
      return r.json();
    });
  }

  function getText(url) {
    return fetch(url, {cache: "no-store"}).then(function (r) {
      if (!r.ok) throw new Error(url + ": HTTP " + r.status);
      return r.text();
    });
  }

  function pageData() {
    var node = document.getElementById("page-data");
    return node ? JSON.parse(node.textContent) : {};
  }

  /* <time data-ms=...> shows local time; <span data-age-ms=...> a live "3m ago". */
  function localizeTimes(root) {
    (root || document).querySelectorAll("[data-ms]").forEach(function (node) {
      var ms = Number(node.getAttribute("data-ms"));
      if (ms) { node.textContent = fmtTime(ms); node.title = new Date(ms).toISOString(); }
    });
    (root || document).querySelectorAll("[data-age-ms]").forEach(function (node) {
      var ms = Number(node.getAttribute("data-age-ms"));
      if (ms) { node.textContent = fmtAge(ms); node.title = fmtTime(ms); }
    });
  }

  var tooltip = null;
  function showTip(evt, text) {
    tooltip = tooltip || document.getElementById("tooltip");
    if (!tooltip) return;
    tooltip.textContent = text;
    tooltip.style.display = "block";
    var x = evt.clientX + 14, y = evt.clientY + 14;
    var w = tooltip.offsetWidth, h = tooltip.offsetHeight;
    if (x + w > window.innerWidth - 8) x = evt.clientX - w - 14;
    if (y + h > window.innerHeight - 8) y = evt.clientY - h - 14;
    tooltip.style.left = x + "px";
    tooltip.style.top = y + "px";
  }
  function hideTip() { if (tooltip) tooltip.style.display = "none"; }

  function refreshSeconds(fallback) {
    var m = /[?&]refresh=([0-9.]+)/.exec(window.location.search);
    var secs = m ? Number(m[1]) : fallback;
    return Math.min(600, Math.max(0.5, secs || fallback));
  }

  // ---------------------------------------------------------------- task list

  function initIndex() {
    var period = refreshSeconds(5) * 1000;
    var dot = document.getElementById("live-dot"), stamp = document.getElementById("live-stamp");
    var tabs = document.querySelectorAll(".tabs button[data-tab]");
    var views = {};  // type -> {node, url}
    document.querySelectorAll("[data-list]").forEach(function (node) {
      views[node.getAttribute("data-list")] = {node: node, url: node.getAttribute("data-url")};
    });

    function show(type) {
      tabs.forEach(function (b) { b.classList.toggle("on", b.getAttribute("data-tab") === type); });
      Object.keys(views).forEach(function (t) { views[t].node.hidden = t !== type; });
      if (window.history.replaceState) window.history.replaceState(null, "", "#" + type);
    }
    tabs.forEach(function (b) {
      b.addEventListener("click", function () { show(b.getAttribute("data-tab")); });
    });
    if (window.location.hash === "#finished") show("finished");

    function load(type) {
      var view = views[type];
      return getText(view.url).then(function (html) {
        view.node.innerHTML = html;  // server-rendered, autoescaped fragment
        localizeTimes(view.node);
      });
    }
    function counts() {
      return getJSON("/j/task_id_count").then(function (c) {
        document.querySelectorAll("[data-count]").forEach(function (n) {
          var v = c[n.getAttribute("data-count")];
          if (v !== undefined) n.textContent = v;
        });
      });
    }
    function tick() {
      Promise.all(Object.keys(views).map(load).concat([counts()])).then(function () {
        dot.classList.remove("stale");
        stamp.textContent = "updated " + fmtClock(Date.now(), true);
        document.body.setAttribute("data-refreshes",
          String(Number(document.body.getAttribute("data-refreshes") || 0) + 1));
      }, function (err) {
        dot.classList.add("stale");
        stamp.textContent = "observer unreachable (" + err.message + "), retrying";
      });
    }
    // Pager links inside a fragment load into the same view instead of leaving the page.
    Object.keys(views).forEach(function (type) {
      views[type].node.addEventListener("click", function (evt) {
        var link = evt.target.closest("a[data-pager]");
        if (!link) return;
        evt.preventDefault();
        views[type].url = link.getAttribute("href");
        load(type);
      });
    });
    localizeTimes(document);
    setInterval(tick, period);
  }

  // ---------------------------------------------------------------- resource charts

  /* A line chart of [t_seconds, value] over the last `window` seconds, as inline SVG. */
  function drawChart(node, points, opts) {
    clear(node);
    if (!points.length) {
      var empty = document.createElement("div");
      empty.className = "chart-empty";
      empty.textContent = opts.empty;
      node.appendChild(empty);
      return;
    }
    var W = 640, H = 190, L = 58, R = 14, T = 28, B = 24;
    var root = svg("svg", {viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": opts.title}, node);
    // From the first sample (at least a minute back) to now, at most `window` seconds.
    var tEnd = Math.max(points[points.length - 1][0], opts.now || 0);
    var tStart = Math.max(tEnd - opts.window, Math.min(points[0][0], tEnd - 60));
    var vMax = 0;
    points.forEach(function (p) { vMax = Math.max(vMax, p[1]); });
    vMax = niceCeil(vMax > 0 ? vMax * 1.1 : opts.minMax);
    var x = function (t) { return L + (W - L - R) * (t - tStart) / Math.max(1, tEnd - tStart); };
    var y = function (v) { return T + (H - T - B) * (1 - v / vMax); };

    for (var i = 0; i <= 4; i++) {
      var v = vMax * i / 4;
      svg("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), "class": "axis"}, root);
      svgText(L - 6, y(v) + 4, opts.fmt(v), {"text-anchor": "end"}, root);
    }
    var span = tEnd - tStart, step = span > 1800 ? 600 : span > 600 ? 300 : span > 120 ? 60 : 15;
    for (var t = Math.ceil(tStart / step) * step; t <= tEnd; t += step) {
      svgText(x(t), H - 6, fmtClock(t * 1000, step < 60), {"text-anchor": "middle"}, root);
    }
    var shown = points.filter(function (p) { return p[0] >= tStart; });
    var d = shown.map(function (p, j) { return (j ? "L" : "M") + x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1); });
    if (shown.length === 1) {  // one sample: a dot, not an invisible zero-length line
      svg("circle", {cx: x(shown[0][0]), cy: y(shown[0][1]), r: 3, "class": "area", style: "opacity:1"}, root);
    } else {
      svg("path", {d: d.join(" ") + "L" + x(shown[shown.length - 1][0]).toFixed(1) + "," + y(0) +
        "L" + x(shown[0][0]).toFixed(1) + "," + y(0) + "Z", "class": "area"}, root);
      svg("path", {d: d.join(" "), "class": "line"}, root);
    }
    svgText(L, 18, opts.title, {"class": "lane-label"}, root);
    svgText(W - R, 20, opts.fmt(shown[shown.length - 1][1]), {"text-anchor": "end", "class": "now"}, root);

    // Hover: the nearest sample's time and value.
    var guide = svg("line", {y1: T, y2: H - B, "class": "axis", visibility: "hidden"}, root);
    root.addEventListener("mousemove", function (evt) {
      var box = root.getBoundingClientRect();
      var t = tStart + (evt.clientX - box.left) / box.width * W;
      t = tStart + (t - L) / (W - L - R) * (tEnd - tStart);
      var best = shown[0];
      shown.forEach(function (p) { if (Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p; });
      guide.setAttribute("x1", x(best[0])); guide.setAttribute("x2", x(best[0]));
      guide.setAttribute("visibility", "visible");
      showTip(evt, fmtTime(best[0] * 1000) + "\n" + opts.title + ": " + opts.fmt(best[1]));
    });
    root.addEventListener("mouseleave", function () { guide.setAttribute("visibility", "hidden"); hideTip(); });
  }

  function niceCeil(v) {
    var mag = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * mag >= v) return steps[i] * mag;
    return 10 * mag;
  }

  // ---------------------------------------------------------------- process timeline

  var OUTCOMES = ["WAITING", "RUNNING", "SUCCESS", "FAILED", "KILLED", "LOST"];

  /* A Gantt chart: one lane per process, one bar per run; `cursorMs` marks the time-travel moment. */
  function drawTimeline(node, data, cursorMs, onPick) {
    clear(node);
    var lanes = data.processes || [];
    if (!lanes.length) {
      var empty = document.createElement("div");
      empty.className = "chart-empty";
      empty.textContent = "No process has been scheduled yet.";
      node.appendChild(empty);
      return;
    }
    var W = 1000, L = 170, R = 16, T = 8, laneH = 26, axisH = 24, taskH = 18;
    var statuses = data.statuses || [];
    var top = T + (statuses.length ? taskH + 6 : 0);
    var H = top + lanes.length * laneH + axisH;
    var start = data.start_ms, end = Math.max(data.end_ms || Date.now(), start + 100);
    end += (end - start) * 0.02;  // room for the last bar's end
    var x = function (ms) { return L + (W - L - R) * (ms - start) / (end - start); };
    var root = svg("svg", {viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "process timeline"}, node);

    var span = (end - start) / 1000;
    var steps = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600,
      7200, 21600, 43200, 86400];
    var step = steps[steps.length - 1];
    for (var i = 0; i < steps.length; i++) if (span / steps[i] <= 7) { step = steps[i]; break; }
    for (var k = Math.ceil(start / 1000 / step); k * step * 1000 <= end; k++) {
      var tick = k * step * 1000, gx = x(tick);
      svg("line", {x1: gx, x2: gx, y1: T, y2: H - axisH + 4, "class": "axis"}, root);
      svgText(gx, H - 6, fmtClock(tick, step < 60, step < 1), {"text-anchor": "middle"}, root);
    }

    // The task's own states on a thin lane above the processes.
    if (statuses.length) {
      svgText(L - 10, T + taskH / 2 + 4, "task", {"text-anchor": "end", "class": "lane-label task-label"}, root);
      statuses.forEach(function (status, j) {
        var from = status.timestamp * 1000;
        var to = j + 1 < statuses.length ? statuses[j + 1].timestamp * 1000 : (data.live ? end : from);
        var seg = svg("rect", {x: x(from), y: T + 3, width: Math.max(4, x(to) - x(from)), height: taskH - 6,
          "class": "task-state fill-" + status.state, "data-state": status.state}, root);
        var tip = "task · " + status.state + "\nentered   " + fmtPrecise(from) +
          (j + 1 < statuses.length ? "\nfor       " + fmtDuration((to - from) / 1000) : "");
        seg.addEventListener("mousemove", function (evt) { showTip(evt, tip); });
        seg.addEventListener("mouseleave", hideTip);
        if (onPick) seg.addEventListener("click", function () { onPick(from); });
      });
    }

    lanes.forEach(function (lane, row) {
      var y = top + row * laneH;
      var shortName = lane.name.length > 22 ? lane.name.slice(0, 21) + "…" : lane.name;
      var label = svgText(L - 10, y + laneH / 2 + 4, shortName,
        {"text-anchor": "end", "class": "lane-label", "data-name": lane.name}, root);
      svg("title", {}, label).textContent = lane.name;
      (lane.runs || []).forEach(function (run) {
        var from = run.waiting_ms || run.fork_ms || run.start_ms || start;
        var to = run.stop_ms || (data.live ? end : data.end_ms || end);
        var bx = x(from), bw = Math.max(2, x(to) - bx);
        var bar = svg("rect", {x: bx, y: y + 4, width: bw, height: laneH - 8,
          "class": "run fill-" + run.outcome, "data-process": lane.name, "data-run": run.run,
          "data-state": run.state}, root);
        if (run.waiting_ms && (run.fork_ms || run.start_ms)) {  // the waiting part, drawn over the bar
          var wEnd = x(run.fork_ms || run.start_ms);
          svg("rect", {x: bx, y: y + 4, width: Math.max(0, wEnd - bx), height: laneH - 8,
            "class": "wait fill-WAITING", "pointer-events": "none"}, root);
        }
        var tip = lane.name + " · run " + run.run + " · " + run.state +
          (run.waiting_ms ? "\nwaiting   " + fmtPrecise(run.waiting_ms) : "") +
          (run.fork_ms ? "\nforked    " + fmtPrecise(run.fork_ms) : "") +
          (run.start_ms ? "\nstarted   " + fmtPrecise(run.start_ms) : "") +
          (run.stop_ms ? "\nstopped   " + fmtPrecise(run.stop_ms) : "") +
          (run.start_ms ? "\nran for   " + fmtDuration(((run.stop_ms || Date.now()) - run.start_ms) / 1000) : "") +
          (run.return_code !== null && run.return_code !== undefined ? "\nexit code " + run.return_code : "");
        bar.addEventListener("mousemove", function (evt) { showTip(evt, tip); });
        bar.addEventListener("mouseleave", hideTip);
        if (onPick) bar.addEventListener("click", function () { onPick(run.stop_ms || run.start_ms || from); });
      });
    });
    if (cursorMs) {
      var cx = x(Math.min(end, Math.max(start, cursorMs)));
      svg("line", {x1: cx, x2: cx, y1: 2, y2: H - axisH + 4, "class": "cursor"}, root);
    }
  }

  /* The /j/timeline answer (epoch seconds; `processes` maps a name to its runs) in ms, as drawn. */
  function timelineModel(raw) {
    var ms = function (v) { return v === null || v === undefined ? null : v * 1000; };
    var procs = Object.keys(raw.processes || {}).map(function (name) {
      return {name: name, runs: raw.processes[name].map(function (r) {
        var state = r.state || "WAITING";
        var outcome = {FORKED: "RUNNING"}[state] || (OUTCOMES.indexOf(state) >= 0 ? state : "WAITING");
        return {run: r.run, state: state, outcome: outcome, waiting_ms: ms(r.waiting), fork_ms: ms(r.forked),
          start_ms: ms(r.started), stop_ms: ms(r.stopped), return_code: r.return_code};
      })};
    });
    procs.sort(function (a, b) { return firstTime(a) - firstTime(b) || (a.name < b.name ? -1 : 1); });
    return {start_ms: ms(raw.start), end_ms: ms(raw.end), statuses: raw.statuses || [], processes: procs};
  }

  function firstTime(lane) {
    var r = lane.runs[0] || {};
    return r.waiting_ms || r.fork_ms || r.start_ms || Infinity;
  }

  // ---------------------------------------------------------------- task page

  function initTask() {
    var data = pageData();
    var taskId = data.task_id;
    var period = refreshSeconds(5) * 1000;
    var slider = document.getElementById("travel"), label = document.getElementById("travel-at");
    var liveBtn = document.getElementById("travel-live");
    var at = data.at_ms || null;
    var timeline = null;

    function renderCharts(history) {
      var now = data.active ? Date.now() / 1000 : 0;
      var cpu = history.map(function (s) { return [s.timestamp, s.cpu]; });
      var ram = history.map(function (s) { return [s.timestamp, s.ram]; });
      var why = data.active ? "No samples yet: the first arrives within one collection interval."
        : "No samples: resources are sampled only while a task runs, and kept for an hour.";
      drawChart(document.getElementById("chart-cpu"), cpu,
        {title: "CPU (cores)", fmt: fmtCpu, window: 3600, minMax: 1, now: now, empty: why});
      drawChart(document.getElementById("chart-ram"), ram,
        {title: "RAM (RSS)", fmt: fmtBytes, window: 3600, minMax: 64 * 1048576, now: now, empty: why});
    }

    function renderTimeline() {
      drawTimeline(document.getElementById("timeline"), timeline, at, travelTo);
    }

    /* Everything that is drawn from the page's embedded data (first load and each refresh). */
    function render(fresh) {
      data.active = fresh.active;
      timeline = timelineModel(fresh.timeline);
      timeline.live = fresh.active;
      if (fresh.active) timeline.end_ms = Math.max(fresh.timeline.now * 1000, timeline.end_ms || 0);
      if (slider) {
        slider.min = String(fresh.travel[0]);
        slider.max = String(fresh.travel[1]);
        if (!at) slider.value = slider.max;
      }
      renderTimeline();
      renderCharts(fresh.history || []);
    }

    /* Fetch the page as of `ms` (null = now) and swap in its state snapshot and data. */
    function reload(ms) {
      var url = "/task/" + encodeURIComponent(taskId) + (ms ? "?at=" + Math.round(ms) : "");
      return getText(url).then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("snapshot"), current = document.getElementById("snapshot");
        var freshData = doc.getElementById("page-data");
        if (!fresh || !current || !freshData) throw new Error("unexpected answer from " + url);
        if (ms !== at) return;  // the user moved on while this was loading
        current.replaceWith(document.importNode(fresh, true));
        localizeTimes(document.getElementById("snapshot"));
        render(JSON.parse(freshData.textContent));
        if (window.history.replaceState) window.history.replaceState(null, "", url);
      });
    }

    function setLabel(ms) {
      if (!label) return;
      label.textContent = ms ? fmtTime(ms) : data.active ? "now (live)" : "the end";
      if (liveBtn) liveBtn.classList.toggle("on", !ms);
    }

    function travelTo(ms) {
      if (ms && slider && data.active && ms >= Number(slider.max)) ms = null;  // the right end is "now"
      at = ms || null;
      if (slider && at) slider.value = String(at);
      setLabel(at);
      renderTimeline();
      return reload(at).catch(function (err) { console.error("time travel: " + err.message); });
    }

    if (slider) {
      slider.addEventListener("input", function () { setLabel(Number(slider.value)); });
      slider.addEventListener("change", function () { travelTo(Number(slider.value)); });
    }
    if (liveBtn) {
      liveBtn.addEventListener("click", function () {
        if (slider) slider.value = slider.max;
        travelTo(null);
      });
    }
    setLabel(at);
    localizeTimes(document);
    render(data);
    document.body.setAttribute("data-ready", "1");

    setInterval(function () {
      if (!data.active || at) return;  // a finished task, or a past moment, does not change
      reload(null).catch(function () { /* the next tick retries */ });
    }, period);
    window.thermosTravel = travelTo;  // for tests and the console
  }

  // ---------------------------------------------------------------- log / file follower

  /* Follows a file through /logdata or /filedata: the last `tail` bytes first, then whatever is
   * appended, polling with the offset where the previous read stopped. */
  function initFollow() {
    var data = pageData();
    var out = document.getElementById("log"), status = document.getElementById("follow-status");
    var followBtn = document.getElementById("follow"), earlierBtn = document.getElementById("earlier");
    var period = refreshSeconds(1) * 1000;
    var TAIL = 256 * 1024, CHUNK = 1024 * 1024;
    var first = null, end = null, following = true, busy = false;

    function url(offset, length) { return data.data_url + "?offset=" + offset + "&length=" + length; }

    function atBottom() { return out.scrollHeight - out.scrollTop - out.clientHeight < 40; }

    function report(text) { status.textContent = text; }

    /* /logdata and /filedata XML-escape their data (Aurora's format); the page shows text. */
    function unescapeXml(text) {
      return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
    }

    function append(text) {
      var stick = atBottom();
      out.appendChild(document.createTextNode(text));
      if (stick) out.scrollTop = out.scrollHeight;
    }

    function start() {
      return getJSON(url(-1, 0)).then(function (r) {  // where the file ends now
        if (r.offset === undefined) { report("not a file (yet) – waiting"); return; }
        var size = r.offset;
        first = Math.max(0, size - TAIL);
        end = first;
        if (earlierBtn) earlierBtn.hidden = first === 0;
        return poll();
      });
    }

    function poll() {
      if (end === null) return start();
      return getJSON(url(end, CHUNK)).then(function (r) {
        if (r.offset === undefined) { report("file is gone"); return; }
        if (r.length > 0) {
          append(unescapeXml(r.data));
          end = r.offset + r.length;
          if (r.length === CHUNK) return poll();
        }
        report((following ? "following · " : "paused · ") + fmtBytes(end) + " read · " +
          fmtClock(Date.now(), true));
        out.setAttribute("data-end", String(end));
      });
    }

    function tick() {
      if (!following || busy) return;
      busy = true;
      poll().catch(function (err) { report("observer unreachable (" + err.message + "), retrying"); })
        .then(function () { busy = false; });
    }

    if (followBtn) {
      followBtn.addEventListener("click", function () {
        following = !following;
        followBtn.classList.toggle("on", following);
        followBtn.textContent = following ? "Following" : "Follow";
        if (following) { out.scrollTop = out.scrollHeight; tick(); }
      });
    }
    if (earlierBtn) {
      earlierBtn.addEventListener("click", function () {
        var from = Math.max(0, first - TAIL);
        getJSON(url(from, first - from)).then(function (r) {
          if (!r.length) return;
          out.insertBefore(document.createTextNode(unescapeXml(r.data)), out.firstChild);
          first = from;
          earlierBtn.hidden = first === 0;
        });
      });
    }
    busy = true;
    start().catch(function (err) { report("observer unreachable (" + err.message + ")"); })
      .then(function () { busy = false; out.scrollTop = out.scrollHeight; });
    setInterval(tick, period);
  }

  // ---------------------------------------------------------------- boot

  var pages = {index: initIndex, task: initTask, follow: initFollow};
  document.addEventListener("DOMContentLoaded", function () {
    var init = pages[document.body.getAttribute("data-page")];
    if (init) init(); else localizeTimes(document);
  });
})();
