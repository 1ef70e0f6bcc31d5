// useCollaborationPresence and <CollaborationPresence>: websocket-api.md "Client
// Integration / Collaboration Presence Component".
//
// Presence is part of a trip's state, so the hook is a selector over
// useTripCollaboration's result (no second connection, no second subscription): the
// spec's activeUsers and editingFields (field -> userId of someone else editing it) and
// its focus/blur handlers, which send the advisory locks through TripSync. The
// component takes that result (`collaboration`), or, as the spec writes it, a `tripId`
// and `currentUserId`: then it joins the trip itself with the <TripSageProvider>'s
// settings.
import { useMemo, type ReactNode } from "react";
import type { Collaborator } from "../view/trip.js";
import { useTripCollaboration, type TripCollaboration } from "./trip.js";

export interface PresenceState {
  activeUsers: readonly Collaborator[];
  /** field -> userId, for fields another user is editing. */
  editingFields: Readonly<Record<string, string>>;
  handleFieldFocus: (fieldName: string) => void;
  handleFieldBlur: (fieldName: string) => void;
}

export function useCollaborationPresence(
  collaboration: TripCollaboration,
  currentUserId?: string,
): PresenceState {
  const { activeCollaborators, editingFields, startEditing, stopEditing } = collaboration;
  return useMemo(() => {
    const others = Object.entries(editingFields).filter(([, userId]) => userId !== currentUserId);
    return {
      activeUsers: activeCollaborators,
      editingFields: Object.freeze(Object.fromEntries(others)),
      handleFieldFocus: startEditing,
      handleFieldBlur: stopEditing,
    };
  }, [activeCollaborators, editingFields, startEditing, stopEditing, currentUserId]);
}

export interface CollaborationPresenceProps {
  /** A trip's state from useTripCollaboration (no connection of its own)... */
  collaboration?: TripCollaboration;
  /** ...or, as the spec shows it, the trip: joined with the <TripSageProvider>'s settings. */
  tripId?: string;
  currentUserId?: string;
  /** One collaborator's badge; default: the name, marked while editing. */
  renderCollaborator?: (user: Collaborator, editing: boolean) => ReactNode;
}

export function CollaborationPresence(props: CollaborationPresenceProps) {
  if (props.collaboration) return <PresenceList {...props} collaboration={props.collaboration} />;
  if (props.tripId === undefined) {
    throw new Error("<CollaborationPresence> needs a collaboration (useTripCollaboration) or a tripId");
  }
  return <TripPresence {...props} tripId={props.tripId} />;
}

function TripPresence(props: CollaborationPresenceProps & { tripId: string }) {
  const collaboration = useTripCollaboration(props.tripId);
  return <PresenceList {...props} collaboration={collaboration} />;
}

function PresenceList({
  collaboration,
  currentUserId,
  renderCollaborator,
}: CollaborationPresenceProps & { collaboration: TripCollaboration }) {
  const { activeUsers, editingFields } = useCollaborationPresence(collaboration, currentUserId);
  const editors = new Set(Object.values(editingFields));
  return (
    <div className="collaboration-presence">
      <div className="active-collaborators" data-testid="active-collaborators">
        {activeUsers.map((user) => {
          const editing = editors.has(user.userId);
          return (
            <span
              key={user.userId}
              className={editing ? "collaborator editing" : "collaborator"}
              data-user-id={user.userId}
              title={user.currentField ? `${user.userName ?? user.userId}: ${user.currentField}` : undefined}
            >
              {renderCollaborator ? renderCollaborator(user, editing) : (user.userName ?? user.userId)}
            </span>
          );
        })}
      </div>
      <div className="editing-indicators">
        {Object.entries(editingFields).map(([field, userId]) => {
          const user = activeUsers.find((u) => u.userId === userId);
          return (
            <span key={field} className="editing-indicator" data-field={field}>
              {`${user?.userName ?? userId} is editing ${field}`}
            </span>
          );
        })}
      </div>
    </div>
  );
}
