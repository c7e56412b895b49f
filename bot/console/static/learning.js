// Learning pages: refresh the running retraining job's progress and stage (text only, never HTML),
// and reload once it has finished so its results show.
(function () {
  "use strict";
  var table = document.getElementById("jobs");
  if (!table || table.getAttribute("data-running") !== "1" || !window.fetch) { return; }

  function update(job) {
    var row = table.querySelector('tr.job[data-id="' + job.id + '"]');
    if (!row) { return false; }
    row.querySelector(".status").textContent = job.status_zh;
    row.querySelector(".stage").textContent = job.stage;
    row.querySelector("progress").value = job.progress;
    row.querySelector(".pct").textContent = job.progress + "%";
    row.className = "job " + job.status;
    return true;
  }

  function poll() {
    fetch("/console/nlu/jobs", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
      .then(function (data) {
        var known = data.items.every(update);
        var running = data.items.some(function (j) { return j.running; });
        if (!running || !known) { window.location.replace(window.location.pathname); return; }
        window.setTimeout(poll, 1500);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }

  window.setTimeout(poll, 1000);
})();
