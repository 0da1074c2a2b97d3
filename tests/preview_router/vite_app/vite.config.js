// The router forwards Host = <label>.preview.localhost; Vite must accept it.
export default {
  cacheDir: process.env.VITE_CACHE_DIR || "node_modules/.vite",
  clearScreen: false,
  server: { allowedHosts: [".preview.localhost"] },
};
