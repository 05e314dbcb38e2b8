// The activity charts: series from /ui/activity.json, drawn with the vendored uPlot.
(function () {
  "use strict";
  var charts = [];

  function draw(data) {
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    document.querySelectorAll(".chart").forEach(function (el) {
      var opts = {
        width: Math.max(300, el.clientWidth || 800),
        height: 220,
        series: [
          {},
          { label: el.dataset.label, stroke: "#1f6feb", fill: "rgba(31,111,235,0.15)", width: 2 }
        ],
        axes: [{}, { size: 70 }]
      };
      charts.push(new uPlot(opts, [data.t, data[el.dataset.series]], el));
      el.dataset.points = String(data.t.length);
    });
    document.body.dataset.chartsReady = "1";
  }

  function load() {
    var hours = document.getElementById("hours").value;
    fetch("/ui/activity.json?hours=" + encodeURIComponent(hours), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(draw);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("hours").addEventListener("change", load);
    load();
    setInterval(load, 60000);
  });
})();
