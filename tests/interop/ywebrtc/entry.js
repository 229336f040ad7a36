// What the test page needs, as one browser bundle (install.sh runs esbuild on it): window.YW.Doc, WebrtcProvider.
export { Doc } from 'yjs'
export { WebrtcProvider } from 'y-webrtc'
