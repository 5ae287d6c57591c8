//! `switchboard passwd FILE USER`: adds or changes a user in a password file
//! (Mosquitto's format, argon2id hashes), or removes one with `-D`. The password
//! comes from a prompt without echo on a terminal, else from the first line of
//! stdin. The file is replaced atomically and readable by its owner only.

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use switchboard_broker::auth::passwords::{edit_file, hash_password};

pub fn run(file: &Path, user: &str, delete: bool) -> Result<String, String> {
    if user.is_empty() || user.contains(':') || user.contains(char::is_whitespace) {
        return Err(format!("{user:?} is not a user name (no ':' or spaces)"));
    }
    let old = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !delete => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    let (text, found) = if delete {
        edit_file(&old, user, None)
    } else {
        let hash = hash_password(read_password()?.as_bytes())?;
        edit_file(&old, user, Some(&hash))
    };
    if delete && !found {
        return Err(format!("no user {user:?} in {}", file.display()));
    }
    write_private(file, &text)?;
    Ok(match (delete, found) {
        (true, _) => format!("removed {user} from {}", file.display()),
        (false, true) => format!("changed {user}'s password in {}", file.display()),
        (false, false) => format!("added {user} to {}", file.display()),
    })
}

fn read_password() -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("the passwords differ".into());
        }
        return non_empty(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    non_empty(line.trim_end_matches(['\n', '\r']).to_string())
}

fn non_empty(password: String) -> Result<String, String> {
    if password.is_empty() {
        return Err("an empty password".into());
    }
    Ok(password)
}

/// Writes `text` to a temporary file beside `path` (mode 0600), then renames it over.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| format!("cannot write {}: {e}", path.display()))
}
