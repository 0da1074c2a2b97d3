/** "Share" (owner) or "Members" (everyone else) in the editor's top bar; nothing without logins. */
import { useCallback, useState } from "react";
import type { ProjectRole } from "../api/http";
import { useSignedInUser } from "../state/useAuth";
import { isOwner } from "../state/roles";
import { UsersIcon } from "./Icons";
import { ShareDialog } from "./ShareDialog";

interface Props {
  projectId: string;
  projectName: string;
  role: ProjectRole;
}

export function ShareButton({ projectId, projectName, role }: Props) {
  const user = useSignedInUser();
  const [open, setOpen] = useState(false);
  const close = useCallback(() => setOpen(false), []);
  if (!user) return null;
  const owner = isOwner(role);
  return (
    <>
      <button
        className={owner ? "btn small primary" : "btn small ghost"}
        data-testid={owner ? "share" : "members"}
        title={owner ? "Invite people to this project" : "Who has access to this project"}
        onClick={() => setOpen(true)}
      >
        <UsersIcon /> {owner ? "Share" : "Members"}
      </button>
      {open && <ShareDialog projectId={projectId} projectName={projectName} role={role} youSub={user.sub} onClose={close} />}
    </>
  );
}
