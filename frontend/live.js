// tb-viz frontend: following a run that is still training.
//
// While the tab is visible, `poll` runs every `intervalMs` (one /tags request: the caller only
// re-fetches what changed); when the page is hidden polling stops, and it resumes with an
// immediate poll when the page shows again. One poll at a time.

/**
 * @param {function(): !Promise} poll
 * @param {number} intervalMs
 * @param {function(string)} onState called with "live" or "paused"
 * @return {{stop: function()}}
 */
export function startPolling(poll, intervalMs, onState) {
  let timer = null;
  let running = false;
  let stopped = false;
  const visible = () => document.visibilityState === "visible";

  const schedule = () => {
    if (stopped || timer !== null || running || !visible()) return;
    timer = setTimeout(tick, intervalMs);
  };
  const tick = async () => {
    timer = null;
    if (stopped || running || !visible()) return;
    running = true;
    try {
      await poll();
    } catch (e) {
      // The poll shows its own errors; keep polling.
    } finally {
      running = false;
      schedule();
    }
  };
  const onVisibility = () => {
    onState(visible() ? "live" : "paused");
    if (!visible()) {
      clearTimeout(timer);
      timer = null;
      return;
    }
    if (timer === null) tick();
  };
  document.addEventListener("visibilitychange", onVisibility);
  onState(visible() ? "live" : "paused");
  schedule();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", onVisibility);
    },
  };
}
