// The global log's live tail: new events appear at the top as they are pushed.
// Server-sent events from /api/tail; when they cannot be had (no EventSource,
// or a proxy that refuses the stream), polling /api/log?after=… every second.
// Rows are built with textContent only: event data is never parsed as HTML.
(function () {
  "use strict";
  var rows = document.getElementById("log-rows");
  var status = document.getElementById("tail-status");
  if (!rows || rows.dataset.tailAfter === undefined) return;
  var after = rows.dataset.tailAfter;
  var MAX_ROWS = 500;

  function later(a, b) {
    // Positions are 64-bit integers: compare them as BigInt where possible.
    if (typeof BigInt === "function") return BigInt(a) > BigInt(b);
    return Number(a) > Number(b);
  }

  function setStatus(state, text) {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = text;
  }

  function cell(text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function link(href, text) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function clock(iso) {
    return iso.replace("T", " ").replace("Z", "").slice(0, 23);
  }

  function preview(data) {
    var text = JSON.stringify(data, null, 0).replace(/","/g, "\", \"").replace(/":/g, "\": ");
    return text.length <= 120 ? text : text.slice(0, 119) + "…";
  }

  function add(event) {
    var position = String(event.position);
    if (!later(position, after)) return;
    after = position;
    var tr = document.createElement("tr");
    tr.dataset.position = position;
    tr.className = "fresh";
    tr.appendChild(cell(position, "num"));
    var time = cell("", "time");
    var t = document.createElement("time");
    t.dateTime = event.recorded_at;
    t.textContent = clock(event.recorded_at);
    time.appendChild(t);
    tr.appendChild(time);
    var stream = cell("", "id");
    stream.appendChild(link("/streams/" + encodeURIComponent(event.stream_id), event.stream_id));
    tr.appendChild(stream);
    tr.appendChild(cell(String(event.version), "num"));
    var name = cell("");
    name.appendChild(link("/events/" + encodeURIComponent(event.id), event.name));
    tr.appendChild(name);
    tr.appendChild(cell(preview(event.data), "preview"));
    rows.insertBefore(tr, rows.firstChild);
    while (rows.children.length > MAX_ROWS) rows.removeChild(rows.lastChild);
    var empty = document.getElementById("log-empty");
    if (empty) empty.remove();
  }

  function poll() {
    setStatus("polling", "live (polling)");
    fetch("/api/log?limit=200&after=" + encodeURIComponent(after), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (body) {
        body.events.forEach(add);
        setTimeout(poll, body.events.length ? 0 : 1000);
      })
      .catch(function () {
        setStatus("error", "reconnecting…");
        setTimeout(poll, 3000);
      });
  }

  function stream() {
    var source = new EventSource("/api/tail?after=" + encodeURIComponent(after));
    var opened = false;
    source.onopen = function () {
      opened = true;
      setStatus("live", "live");
    };
    source.addEventListener("event", function (message) {
      add(JSON.parse(message.data));
    });
    source.onerror = function () {
      // Once open, EventSource reconnects by itself (resuming with Last-Event-ID).
      // A stream that never opened, or that the server closed for good, is
      // replaced by polling.
      if (!opened || source.readyState === EventSource.CLOSED) {
        source.close();
        poll();
      } else {
        setStatus("error", "reconnecting…");
      }
    };
  }

  if (window.EventSource && !("pollOnly" in rows.dataset)) stream();
  else poll();
})();
