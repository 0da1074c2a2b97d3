/** React binding of one agent session: the socket, the reducer and a typed `send`. */
import { useCallback, useEffect, useReducer, useRef, useState } from "react";
import { editorConfig } from "../config";
import type { ClientDataMap, ClientMessageType } from "../protocol/messages";
import { AgentSocket, type ConnectionStatus } from "../ws/socket";
import { initialSession, reduce, type SessionAction, type SessionState } from "./session";

export interface SessionHandle {
  state: SessionState;
  connection: ConnectionStatus;
  dispatch: (action: SessionAction) => void;
  send: <K extends ClientMessageType>(type: K, data: ClientDataMap[K], id?: string) => boolean;
  reconnect: () => void;
  /** Pick the project's model: told to the agent at once (in `init`) and on reconnects. */
  chooseModel: (id: string) => void;
}

export function useSession(sessionId: string | undefined): SessionHandle {
  const [state, dispatch] = useReducer(reduce, initialSession);
  const [connection, setConnection] = useState<ConnectionStatus>({ kind: "connecting", attempt: 0 });
  const socketRef = useRef<AgentSocket | undefined>(undefined);

  useEffect(() => {
    if (!sessionId) return;
    const config = editorConfig();
    const init: ClientDataMap["init"] = {};
    if (config.permissionMode) init.permission_mode = config.permissionMode;
    if (config.thinkingLevel) init.thinking_level = config.thinkingLevel;
    const socket = new AgentSocket({
      url: config.wsUrl,
      sessionId,
      init,
      onMessage: (msg) => dispatch({ type: "server", msg }),
      onStatus: setConnection,
    });
    socketRef.current = socket;
    socket.connect();
    const online = () => socket.connect();
    window.addEventListener("online", online);
    return () => {
      window.removeEventListener("online", online);
      socket.dispose();
      socketRef.current = undefined;
    };
  }, [sessionId]);

  const send = useCallback(
    <K extends ClientMessageType>(type: K, data: ClientDataMap[K], id?: string) =>
      socketRef.current?.send(type, data, id) ?? false,
    [],
  );
  const reconnect = useCallback(() => socketRef.current?.connect(), []);
  const chooseModel = useCallback((id: string) => {
    dispatch({ type: "local/model", id });
    socketRef.current?.updateInit({ model: id });
  }, []);
  return { state, connection, dispatch, send, reconnect, chooseModel };
}
