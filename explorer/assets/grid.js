// The candidates grid reads its rows from the server a page at a time (AG Grid's infinite row model).
// When a control outside the grid changes (ranking, label state, cone, free-text filter) the pages it
// holds are stale: drop them, and the grid asks the server again. Served from the package (no CDN).
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  explorer: {
    refreshGrid: function () {
      dash_ag_grid.getApiAsync("candidates").then(function (api) { api.purgeInfiniteCache(); });
      return window.dash_clientside.no_update;
    },
  },
});
