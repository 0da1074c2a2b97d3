/**
 * Who has access to a project. The owner invites by e-mail (editor or viewer) and removes
 * members or pending invites after a confirmation; everyone else sees the list read-only.
 */
import { useCallback, useEffect, useMemo, useState, type FormEvent } from "react";
import { membersApi, type InviteRole, type ProjectRole } from "../api/http";
import {
  invitedNotice,
  memberRows,
  removedNotice,
  shareErrorSentence,
  validateInvite,
  type MembersList,
  type RemoveTarget,
} from "../state/members";
import { isOwner, ROLE_LABEL } from "../state/roles";
import { ConfirmDialog, Modal } from "./Dialog";

interface Props {
  projectId: string;
  projectName: string;
  /** The caller's role: only the owner may change anything. */
  role: ProjectRole;
  /** The signed-in user's id, to mark their own row. */
  youSub?: string;
  onClose: () => void;
}

type Load = { kind: "loading" } | { kind: "ready"; list: MembersList } | { kind: "failed"; message: string };

/** A short line under the form: what just happened, or what went wrong. */
type Message = { kind: "ok" | "error"; text: string };

function InviteForm({ busy, onInvite }: { busy: boolean; onInvite: (email: string, role: InviteRole) => Promise<boolean> }) {
  const [email, setEmail] = useState("");
  const [role, setRole] = useState<InviteRole>("editor");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (busy) return;
    void onInvite(email, role).then((ok) => ok && setEmail(""));
  };
  return (
    <form className="invite-form" onSubmit={submit} noValidate data-testid="invite-form">
      <input
        autoFocus
        type="email"
        className="text-input"
        placeholder="name@example.com"
        aria-label="E-mail address to invite"
        data-testid="invite-email"
        value={email}
        onChange={(e) => setEmail(e.target.value)}
      />
      <select
        className="text-input"
        aria-label="Access"
        data-testid="invite-role"
        value={role}
        onChange={(e) => setRole(e.target.value === "viewer" ? "viewer" : "editor")}
      >
        <option value="editor">{ROLE_LABEL.editor}</option>
        <option value="viewer">{ROLE_LABEL.viewer}</option>
      </select>
      <button type="submit" className="btn primary" disabled={busy} data-testid="invite-submit">
        {busy ? "Inviting…" : "Invite"}
      </button>
    </form>
  );
}

export function ShareDialog({ projectId, projectName, role, youSub, onClose }: Props) {
  const api = useMemo(() => membersApi(projectId), [projectId]);
  const manage = isOwner(role);
  const [load, setLoad] = useState<Load>({ kind: "loading" });
  const [message, setMessage] = useState<Message | undefined>();
  const [inviting, setInviting] = useState(false);
  const [confirming, setConfirming] = useState<RemoveTarget | undefined>();
  const [removing, setRemoving] = useState<string | undefined>();

  const refresh = useCallback(
    () =>
      api
        .list()
        .then((list) => setLoad({ kind: "ready", list: { members: list.members ?? [], invites: list.invites ?? [] } }))
        .catch((err: unknown) => setLoad({ kind: "failed", message: shareErrorSentence(err) })),
    [api],
  );

  useEffect(() => {
    void refresh();
  }, [refresh]);

  const invite = async (email: string, inviteRole: InviteRole): Promise<boolean> => {
    const problem = validateInvite(email, load.kind === "ready" ? load.list : undefined);
    if (problem) {
      setMessage({ kind: "error", text: problem });
      return false;
    }
    setInviting(true);
    setMessage(undefined);
    try {
      const result = await api.invite(email.trim(), inviteRole);
      setMessage({ kind: "ok", text: invitedNotice(result, email.trim()) });
      await refresh();
      return true;
    } catch (err) {
      setMessage({ kind: "error", text: shareErrorSentence(err) });
      return false;
    } finally {
      setInviting(false);
    }
  };

  const remove = async (target: RemoveTarget) => {
    setConfirming(undefined);
    setRemoving(target.who);
    setMessage(undefined);
    try {
      await (target.kind === "member" ? api.removeMember(target.userSub) : api.removeInvite(target.email));
      setMessage({ kind: "ok", text: removedNotice(target) });
      await refresh();
    } catch (err) {
      setMessage({ kind: "error", text: shareErrorSentence(err) });
    } finally {
      setRemoving(undefined);
    }
  };

  const title = `${manage ? "Share" : "Members of"} “${projectName}”`;
  return (
    <>
      <Modal label={title} testId="share-dialog" className="share-dialog" onClose={onClose} escape={!confirming}>
        <div className="history-head">
          <h3>{title}</h3>
          <button className="btn small ghost" onClick={onClose} data-testid="share-close">
            Close
          </button>
        </div>
        {manage ? (
          <InviteForm busy={inviting} onInvite={invite} />
        ) : (
          <p className="muted small share-hint" data-testid="share-read-only">
            Only the owner can invite people or remove them.
          </p>
        )}
        {message && (
          <p
            className={`share-message${message.kind === "error" ? " bad" : ""}`}
            role={message.kind === "error" ? "alert" : "status"}
            data-testid={message.kind === "error" ? "share-error" : "share-notice"}
          >
            {message.text}
          </p>
        )}
        {load.kind === "loading" && <p className="muted">Loading the members…</p>}
        {load.kind === "failed" && (
          <p className="share-message bad" role="alert" data-testid="share-load-error">
            {load.message}
          </p>
        )}
        {load.kind === "ready" && (
          <ul className="member-list" data-testid="member-list">
            {memberRows(load.list, youSub).map((row) => (
              <li key={row.key} className="member-item" data-testid="member" data-pending={row.pending || undefined}>
                <div className="member-who">
                  <span className="member-name">
                    {row.name}
                    {row.you && <span className="muted"> (you)</span>}
                  </span>
                  {row.email && <span className="muted small">{row.email}</span>}
                </div>
                <span className="badge" data-testid="member-role">
                  {row.pending ? `Invited · ${ROLE_LABEL[row.role]}` : ROLE_LABEL[row.role]}
                </span>
                {manage && row.remove && (
                  <button
                    className="btn ghost small danger"
                    data-testid="member-remove"
                    aria-label={row.pending ? `Withdraw the invitation for ${row.name}` : `Remove ${row.name}`}
                    disabled={removing !== undefined}
                    onClick={() => setConfirming(row.remove)}
                  >
                    {removing === row.remove.who ? "Removing…" : row.pending ? "Withdraw" : "Remove"}
                  </button>
                )}
              </li>
            ))}
          </ul>
        )}
      </Modal>
      {confirming && (
        <ConfirmDialog
          testId="remove-confirm"
          title={confirming.kind === "invite" ? `Withdraw the invitation for ${confirming.who}?` : `Remove ${confirming.who}?`}
          body={
            confirming.kind === "invite"
              ? "They will not get access when they sign in."
              : "They lose access to this project at once. You can invite them again later."
          }
          confirmLabel={confirming.kind === "invite" ? "Withdraw" : "Remove"}
          danger
          onConfirm={() => void remove(confirming)}
          onCancel={() => setConfirming(undefined)}
        />
      )}
    </>
  );
}
