//! Role-based access control with StackStorm's permission types, roles and assignment files.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use squall_store::ActionScope;

/// Permission types squall knows (StackStorm's names). `<type>_all` implies every
/// `<type>_*` permission.
pub const PERMISSION_TYPES: &[&str] = &[
    "action_list",
    "action_view",
    "action_create",
    "action_modify",
    "action_delete",
    "action_execute",
    "action_all",
    "execution_list",
    "execution_view",
    "execution_stop",
    "execution_rerun",
    "execution_all",
    "execution_views_filters_list",
    "stream_view",
    "runner_type_list",
    "runner_type_view",
    "runner_type_all",
    "pack_list",
    "pack_view",
    "pack_all",
    "api_key_list",
    "api_key_view",
    "api_key_create",
    "api_key_modify",
    "api_key_delete",
    "api_key_all",
];

/// What a permission is checked against.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    /// No particular object (list endpoints, the stream).
    Global,
    /// An action, or an execution of it.
    Action { pack: &'a str, name: &'a str },
}

impl Resource<'_> {
    pub fn uid(&self) -> Option<String> {
        match self {
            Resource::Global => None,
            Resource::Action { pack, name } => Some(format!("action:{pack}:{name}")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFile {
    #[serde(default)]
    resource_uid: Option<String>,
    permission_types: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    permission_grants: Vec<GrantFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignmentFile {
    username: String,
    #[serde(default)]
    description: String,
    #[serde(default = "yes")]
    enabled: bool,
    roles: Vec<String>,
}

fn yes() -> bool {
    true
}

/// Where a user holds a permission ([`Rbac::scope`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// On every resource (an admin, or a grant without a `resource_uid`).
    All,
    /// On the actions of these packs and these actions only (possibly none).
    Only(ActionScope),
}

/// A role: permissions granted globally or on a pack or an action.
#[derive(Debug, Clone)]
struct Role {
    grants: Vec<GrantFile>,
}

/// The loaded policy.
#[derive(Debug, Clone, Default)]
pub struct Rbac {
    pub enabled: bool,
    /// Users other than admins see only the executions they started.
    pub permission_isolation: bool,
    roles: HashMap<String, Role>,
    assignments: HashMap<String, Vec<String>>,
}

const ADMIN_ROLES: [&str; 2] = ["system_admin", "admin"];

impl Rbac {
    /// Loads `<dir>/roles/*.yaml` and `<dir>/assignments/*.yaml` (a missing directory means none).
    /// Every problem names its file.
    pub fn load(dir: &Path, enabled: bool, permission_isolation: bool) -> Result<Rbac, String> {
        let mut rbac = Rbac { enabled, permission_isolation, ..Rbac::default() };
        for name in ADMIN_ROLES {
            rbac.roles.insert(name.to_string(), Role { grants: Vec::new() });
        }
        let observer = PERMISSION_TYPES.iter().filter(|p| p.ends_with("_list") || p.ends_with("_view")).map(|p| p.to_string()).collect();
        rbac.roles.insert("observer".into(), Role { grants: vec![GrantFile { resource_uid: None, permission_types: observer }] });
        for (path, role) in read_dir::<RoleFile>(&dir.join("roles"))? {
            let _ = &role.description;
            for grant in &role.permission_grants {
                if let Some(bad) = grant.permission_types.iter().find(|p| !PERMISSION_TYPES.contains(&p.as_str())) {
                    return Err(format!("{path}: unknown permission type \"{bad}\" (known: {})", PERMISSION_TYPES.join(", ")));
                }
                if let Some(uid) = &grant.resource_uid
                    && !(uid.starts_with("pack:") || uid.starts_with("action:"))
                {
                    return Err(format!("{path}: resource_uid \"{uid}\" must look like pack:<pack> or action:<pack>:<name>"));
                }
            }
            if role.enabled {
                rbac.roles.insert(role.name.clone(), Role { grants: role.permission_grants });
            }
        }
        for (path, assignment) in read_dir::<AssignmentFile>(&dir.join("assignments"))? {
            let _ = &assignment.description;
            if let Some(bad) = assignment.roles.iter().find(|r| !rbac.roles.contains_key(*r)) {
                return Err(format!("{path}: role \"{bad}\" is not defined"));
            }
            if assignment.enabled {
                rbac.assignments.entry(assignment.username).or_default().extend(assignment.roles);
            }
        }
        Ok(rbac)
    }

    /// Makes `user` a `system_admin` (the bootstrap admin).
    pub fn assign_admin(&mut self, user: &str) {
        self.assignments.entry(user.to_string()).or_default().push("system_admin".into());
    }

    pub fn roles_of(&self, user: &str) -> Vec<String> {
        self.assignments.get(user).cloned().unwrap_or_default()
    }

    /// Admins may do everything; with RBAC off, everyone is an admin (StackStorm's no-op RBAC).
    pub fn is_admin(&self, user: &str) -> bool {
        !self.enabled || self.roles_of(user).iter().any(|r| ADMIN_ROLES.contains(&r.as_str()))
    }

    pub fn allows(&self, user: &str, permission: &str, resource: Resource<'_>) -> bool {
        self.is_admin(user)
            || self.grants(user, permission).any(|g| match (&g.resource_uid, resource) {
                (None, _) => true,
                (Some(_), Resource::Global) => false,
                (Some(uid), Resource::Action { pack, name }) => *uid == format!("pack:{pack}") || *uid == format!("action:{pack}:{name}"),
            })
    }

    /// Where `user` holds `permission`: everywhere, or on these packs and actions only — what
    /// [`Rbac::allows`] answers for every action at once, so that a list can ask the database
    /// for only what the caller may see.
    pub fn scope(&self, user: &str, permission: &str) -> Scope {
        if self.is_admin(user) {
            return Scope::All;
        }
        let mut within = ActionScope::default();
        for grant in self.grants(user, permission) {
            match grant.resource_uid.as_deref() {
                None => return Scope::All,
                Some(uid) => {
                    if let Some(pack) = uid.strip_prefix("pack:") {
                        within.packs.push(pack.to_string());
                    } else if let Some((pack, name)) = uid.strip_prefix("action:").and_then(|a| a.split_once(':')) {
                        within.refs.push(format!("{pack}.{name}"));
                    }
                }
            }
        }
        Scope::Only(within)
    }

    /// The grants of `user`'s roles that include `permission` (or its type's `_all`), on any
    /// resource.
    fn grants<'a>(&'a self, user: &str, permission: &'a str) -> impl Iterator<Item = &'a GrantFile> + 'a {
        let all = format!("{}_all", permission.rsplit_once('_').map_or(permission, |(kind, _)| kind));
        let roles = self.assignments.get(user).map(Vec::as_slice).unwrap_or_default();
        roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| &r.grants)
            .filter(move |g| g.permission_types.iter().any(|p| p == permission || *p == all))
    }
}

fn read_dir<T: for<'de> Deserialize<'de>>(dir: &Path) -> Result<Vec<(String, T)>, String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{shown}: {e}"))?;
            let parsed = yaml_serde::from_str(&text).map_err(|e| format!("{shown}: {e}"))?;
            Ok((shown, parsed))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir.join(file).parent().unwrap()).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn grants_on_packs_and_actions() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "roles/ops.yaml",
            "name: ops\npermission_grants:\n  - resource_uid: pack:core\n    permission_types: [action_execute, execution_all]\n  - permission_types: [execution_list]\n",
        );
        write(dir.path(), "assignments/alice.yaml", "username: alice\nroles: [ops]\n");
        write(dir.path(), "assignments/bob.yaml", "username: bob\nroles: [observer]\n");
        let rbac = Rbac::load(dir.path(), true, false).unwrap();
        let core = Resource::Action { pack: "core", name: "local" };
        let other = Resource::Action { pack: "demo", name: "x" };
        assert!(rbac.allows("alice", "action_execute", core));
        assert!(rbac.allows("alice", "execution_stop", core), "execution_all implies execution_stop");
        assert!(!rbac.allows("alice", "action_execute", other));
        assert!(rbac.allows("alice", "execution_list", Resource::Global));
        assert!(rbac.allows("bob", "execution_view", other));
        assert!(!rbac.allows("bob", "execution_stop", core));
        assert!(!rbac.allows("nobody", "execution_list", Resource::Global));
    }

    #[test]
    fn scopes_answer_as_allows_does() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "roles/some.yaml",
            "name: some\npermission_grants:\n  - resource_uid: pack:core\n    permission_types: [execution_all]\n  - resource_uid: action:demo:x\n    permission_types: [execution_view]\n  - resource_uid: pack:other\n    permission_types: [execution_stop]\n",
        );
        write(dir.path(), "assignments/carol.yaml", "username: carol\nroles: [some]\n");
        write(dir.path(), "assignments/olga.yaml", "username: olga\nroles: [some, observer]\n");
        write(dir.path(), "assignments/adam.yaml", "username: adam\nroles: [admin]\n");
        let rbac = Rbac::load(dir.path(), true, false).unwrap();
        let only = |packs: &[&str], refs: &[&str]| {
            Scope::Only(ActionScope {
                packs: packs.iter().map(|s| s.to_string()).collect(),
                refs: refs.iter().map(|s| s.to_string()).collect(),
            })
        };
        assert_eq!(rbac.scope("carol", "execution_view"), only(&["core"], &["demo.x"]));
        assert_eq!(rbac.scope("carol", "execution_stop"), only(&["core", "other"], &[]));
        assert_eq!(rbac.scope("nobody", "execution_view"), only(&[], &[]));
        assert_eq!(rbac.scope("olga", "execution_view"), Scope::All, "the observer's global grant");
        assert_eq!(rbac.scope("adam", "execution_view"), Scope::All);
        assert_eq!(Rbac::load(dir.path(), false, false).unwrap().scope("carol", "execution_view"), Scope::All, "RBAC off");
        for (pack, name) in [("core", "local"), ("demo", "x"), ("demo", "y"), ("other", "z")] {
            let resource = Resource::Action { pack, name };
            let Scope::Only(within) = rbac.scope("carol", "execution_view") else { unreachable!() };
            let in_scope = within.packs.iter().any(|p| p == pack) || within.refs.contains(&format!("{pack}.{name}"));
            assert_eq!(in_scope, rbac.allows("carol", "execution_view", resource), "{pack}.{name}");
        }
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "roles/bad.yaml", "name: bad\npermission_grants:\n  - permission_types: [action_fly]\n");
        let err = Rbac::load(dir.path(), true, false).unwrap_err();
        assert!(err.contains("bad.yaml") && err.contains("action_fly"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "assignments/a.yaml", "username: a\nroles: [ghost]\n");
        assert!(Rbac::load(dir.path(), true, false).unwrap_err().contains("ghost"));
    }
}
