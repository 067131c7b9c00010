// tb-viz frontend: the postMessage bridge to the TensorBoard page that hosts the plugin iframe.

/**
 * Connects to TensorBoard's plugin host over a MessagePort, the protocol of
 * tensorboard/components/experimental/plugin_util/{plugin-guest,message}.ts:
 * the guest posts "experimental.bootstrap" with a port to window.parent, then
 * both sides exchange JSON strings {type, id, payload, error, isReply}; every
 * non-reply message is answered with a reply carrying the same type and id.
 * @param {!Object<string, function(*)>} listeners message type -> handler for
 *     notifications from the host (e.g. "experimental.RunsChanged")
 * @return {?{send: function(string, *, number): !Promise<*>}} null when the page
 *     is not inside a frame.
 */
export function connectBridge(listeners) {
  if (window.parent === window) return null;
  const channel = new MessageChannel();
  const port = channel.port1;
  const waiting = new Map();
  let nextId = 0;

  port.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (!message || typeof message !== "object") return;
    const {type, id, payload, error, isReply} = message;
    if (isReply) {
      const wait = waiting.get(id);
      if (!wait) return;
      waiting.delete(id);
      if (error) wait.reject(new Error(String(error)));
      else wait.resolve(payload);
      return;
    }
    let replyError = null;
    const listener = Object.prototype.hasOwnProperty.call(listeners, type) ? listeners[type] : null;
    try {
      if (listener) listener(payload);
    } catch (e) {
      replyError = String(e);
    }
    port.postMessage(JSON.stringify({type, id, payload: null, error: replyError, isReply: true}));
  };
  // The host is TensorBoard's own page (same origin: it reads event.source.frameElement).
  try {
    window.parent.postMessage("experimental.bootstrap", window.location.origin, [channel.port2]);
  } catch (e) {
    return null;
  }

  return {
    send(type, payload, timeoutMs) {
      const id = nextId++;
      port.postMessage(JSON.stringify({type, id, payload, error: null, isReply: false}));
      return new Promise((resolve, reject) => {
        waiting.set(id, {resolve, reject});
        setTimeout(() => {
          if (waiting.delete(id)) reject(new Error(`no answer to ${type} after ${timeoutMs} ms`));
        }, timeoutMs);
      });
    },
  };
}
