// The operator dashboard at /dashboard: the swarm and the training, live from /api/events.
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App.tsx";

const root = document.getElementById("root");
if (root === null) throw new Error("dashboard markup is missing #root");
createRoot(root).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
