// @tripsage/sync-client/yjs: the optional Yjs mode. A trip is also a Yjs document (README
// "Yjs peers"); YjsProvider syncs a Y.Doc with it. yjs and y-protocols are peer
// dependencies of this entry point only.
export {
  MESSAGE_AUTH,
  MESSAGE_AWARENESS,
  MESSAGE_QUERY_AWARENESS,
  MESSAGE_SYNC,
  YjsProvider,
  type BinarySocket,
  type BinarySocketConstructor,
  type ProviderStatus,
  type YjsProviderEvents,
  type YjsProviderOptions,
} from "./provider.js";
