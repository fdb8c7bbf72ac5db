import { useCallback } from "react";
import { adminRequest, loadToken, saveToken, type AdminAction } from "./admin.ts";
import { Controls } from "./components/Controls.tsx";
import { Dashboard } from "./components/Dashboard.tsx";
import { useStatusFeed } from "./hooks.ts";

const initialToken = loadToken();

export function App() {
  const feed = useStatusFeed();
  const request = useCallback((token: string, action: AdminAction) => adminRequest(token, action), []);
  const storeToken = useCallback((token: string | undefined) => saveToken(token), []);
  return (
    <Dashboard
      feed={feed}
      origin={location.origin}
      controls={<Controls status={feed.status} initialToken={initialToken} request={request} storeToken={storeToken} />}
    />
  );
}
