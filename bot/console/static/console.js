// Live queue (server-sent events), the P1 alarm, transcript refresh and canned replies.
// Rows arrive already rendered and escaped by the server; user text is never built into HTML here.
(function () {
  "use strict";
  var queue = document.querySelector("#queue tbody");
  var alertBox = document.getElementById("alert");
  var stale = document.getElementById("stale");
  var seen = null;

  // An officer must know when the page stopped updating (server restarting, network down, session ended):
  // a queue that silently stops is a P1 nobody hears about.
  function live(ok) {
    if (stale) { stale.hidden = ok; }
  }

  function beep() {
    try {
      var ctx = new (window.AudioContext || window.webkitAudioContext)();
      [0, 0.35, 0.7].forEach(function (at) {
        var osc = ctx.createOscillator();
        var gain = ctx.createGain();
        osc.frequency.value = 880;
        osc.connect(gain); gain.connect(ctx.destination);
        gain.gain.setValueAtTime(0.25, ctx.currentTime + at);
        osc.start(ctx.currentTime + at); osc.stop(ctx.currentTime + at + 0.25);
      });
    } catch (e) { /* audio may be blocked until the page is clicked */ }
  }

  function alarm(items) {
    alertBox.textContent = "紧急：P1 危及生命或已超时的求助：" + items.map(function (i) {
      var c = i.case || {};
      return "#" + i.id + " " + (c.country_name || c.country || "地点未知");
    }).join("，");
    alertBox.hidden = false;
    document.title = "【P1】" + document.title.replace(/^【P1】/, "");
    beep();
  }

  if (queue && window.EventSource) {
    var source = new EventSource("/console/events");
    source.addEventListener("open", function () { live(true); });
    source.addEventListener("error", function () { live(false); });  // the browser reconnects by itself
    source.addEventListener("queue", function (event) {
      live(true);
      var data = JSON.parse(event.data);
      queue.innerHTML = data.rows;
      // Alarm on a new P1 case, a case raised to P1, and a case newly past its SLA.
      var now = {};
      data.items.forEach(function (i) { now[i.id] = { priority: i.priority, breached: !!i.breached_at }; });
      if (seen !== null) {
        var urgent = data.items.filter(function (i) {
          var before = seen[i.id];
          var becameP1 = i.priority === 1 && (!before || before.priority !== 1);
          var newlyLate = i.breached_at && i.status === "waiting" && !(before && before.breached);
          return becameP1 || newlyLate;
        });
        if (urgent.length) { alarm(urgent); }
      }
      seen = now;
    });
  }

  var transcript = document.getElementById("transcript");
  if (transcript) {
    transcript.scrollTop = transcript.scrollHeight;
    setInterval(function () {
      // A redirect means the session ended (it would lead to the login page): not a transcript.
      fetch(transcript.dataset.src, { credentials: "same-origin", redirect: "manual" }).then(function (r) {
        if (!r.ok) { throw new Error("transcript: " + (r.status || r.type)); }
        return r.text();
      }).then(function (html) {
        live(true);
        if (html !== transcript.innerHTML) {
          transcript.innerHTML = html;
          transcript.scrollTop = transcript.scrollHeight;
        }
      }).catch(function () { live(false); });
    }, 2000);
  }

  var canned = document.getElementById("canned");
  if (canned) {
    canned.addEventListener("change", function () {
      var box = document.querySelector("#reply textarea");
      if (canned.value) { box.value = canned.value; box.focus(); }
    });
  }
})();
