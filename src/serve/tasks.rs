//! The task store: every task's row in SQLite (`serve/tasks.db` in the store) and its files in
//! `serve/tasks/<id>/` (`bundle/`, `log`, `report.json`, `wheels/`). SQLite because a task must
//! outlive a `kill -9` of the server: each change is one transaction, written through the WAL
//! before the request that made it is answered.
//!
//! States: `new` (created, waiting for its bundle and `PUT build`) → `queued` → `running` →
//! `passed` | `failed` | `error` (the build refused its input) | `cancelled` | `interrupted` (the
//! server stopped while it ran).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::options::TaskOptions;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: i64,
    pub state: String,
    pub options: TaskOptions,
    /// The project directory inside the task's `bundle/` (relative), once a bundle is there.
    pub project: Option<String>,
    pub created: u64,
    pub queued: Option<u64>,
    pub started: Option<u64>,
    pub finished: Option<u64>,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    #[serde(skip)]
    pub pid: Option<i32>,
    #[serde(skip)]
    pub pid_start: Option<u64>,
    #[serde(skip)]
    pub cancel_requested: bool,
    pub resources: Resources,
}

/// The latest figures of a task's process tree and files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resources {
    pub cpu_seconds: f64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    pub disk_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t: u64,
    pub cpu_seconds: f64,
    pub rss_kib: u64,
    pub disk_bytes: u64,
}

pub const TERMINAL: [&str; 5] = ["passed", "failed", "error", "cancelled", "interrupted"];

pub fn is_terminal(state: &str) -> bool {
    TERMINAL.contains(&state)
}

pub struct Tasks {
    conn: Mutex<Connection>,
    pub dir: PathBuf,
}

const COLUMNS: &str = "id, state, options, project, created, queued, started, finished, \
                       exit_code, message, pid, pid_start, cancel_requested, cpu_seconds, \
                       rss_kib, peak_rss_kib, disk_bytes";

fn db_error(what: &str, path: &Path, e: rusqlite::Error) -> Error {
    Error::internal(format!(
        "the task database {}: {what} failed: {e}; if the file is damaged, move it away (the \
         tasks it held are then forgotten)",
        path.display()
    ))
}

impl Tasks {
    /// Opens (creating) `root/tasks.db` and `root/tasks/`.
    pub fn open(root: &Path) -> Result<Tasks> {
        let dir = root.join("tasks");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let db = root.join("tasks.db");
        let conn = Connection::open(&db).map_err(|e| db_error("open", &db, e))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS tasks (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 state TEXT NOT NULL,
                 options TEXT NOT NULL,
                 project TEXT,
                 created INTEGER NOT NULL,
                 queued INTEGER,
                 started INTEGER,
                 finished INTEGER,
                 exit_code INTEGER,
                 message TEXT,
                 pid INTEGER,
                 pid_start INTEGER,
                 cancel_requested INTEGER NOT NULL DEFAULT 0,
                 cpu_seconds REAL NOT NULL DEFAULT 0,
                 rss_kib INTEGER NOT NULL DEFAULT 0,
                 peak_rss_kib INTEGER NOT NULL DEFAULT 0,
                 disk_bytes INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS samples (
                 task INTEGER NOT NULL,
                 t INTEGER NOT NULL,
                 cpu_seconds REAL NOT NULL,
                 rss_kib INTEGER NOT NULL,
                 disk_bytes INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS samples_task ON samples(task);",
        )
        .map_err(|e| db_error("set up", &db, e))?;
        Ok(Tasks {
            conn: Mutex::new(conn),
            dir,
        })
    }

    /// The directory of task `id`'s files.
    pub fn task_dir(&self, id: i64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    fn with<T>(&self, what: &str, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|e| db_error(what, &self.dir.with_file_name("tasks.db"), e))
    }

    pub fn create(&self, options: &TaskOptions) -> Result<i64> {
        let json = serde_json::to_string(options).expect("serializable");
        self.with("create a task", |c| {
            c.execute(
                "INSERT INTO tasks (state, options, created) VALUES ('new', ?1, ?2)",
                params![json, crate::store::unix_now()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn get(&self, id: i64) -> Result<Option<Task>> {
        self.with("read a task", |c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"),
                [id],
                task_of_row,
            )
            .optional()
        })
    }

    /// Every task, oldest first.
    pub fn list(&self) -> Result<Vec<Task>> {
        self.select("ORDER BY id", [])
    }

    pub fn in_state(&self, state: &str) -> Result<Vec<Task>> {
        self.select("WHERE state = ?1 ORDER BY id", [state])
    }

    fn select<P: rusqlite::Params>(&self, tail: &str, p: P) -> Result<Vec<Task>> {
        self.with("list tasks", |c| {
            let mut st = c.prepare_cached(&format!("SELECT {COLUMNS} FROM tasks {tail}"))?;
            let rows = st.query_map(p, task_of_row)?;
            rows.collect()
        })
    }

    /// Sets a field of a task that is still `new`; false when it is not (or does not exist).
    fn update_new(&self, id: i64, set: &str, value: &dyn rusqlite::ToSql) -> Result<bool> {
        self.with("update a task", |c| {
            c.execute(
                &format!("UPDATE tasks SET {set} = ?1 WHERE id = ?2 AND state = 'new'"),
                params![value, id],
            )
            .map(|n| n == 1)
        })
    }

    pub fn set_project(&self, id: i64, project: &str) -> Result<bool> {
        self.update_new(id, "project", &project)
    }

    pub fn set_options(&self, id: i64, options: &TaskOptions) -> Result<bool> {
        let json = serde_json::to_string(options).expect("serializable");
        self.update_new(id, "options", &json)
    }

    /// `new` → `queued`, when the bundle is there; false otherwise.
    pub fn enqueue(&self, id: i64) -> Result<bool> {
        self.with("queue a task", |c| {
            c.execute(
                "UPDATE tasks SET state = 'queued', queued = ?1
                 WHERE id = ?2 AND state = 'new' AND project IS NOT NULL",
                params![crate::store::unix_now(), id],
            )
            .map(|n| n == 1)
        })
    }

    /// Takes the oldest queued task and marks it running, in one step.
    pub fn claim_next(&self) -> Result<Option<Task>> {
        let id = self.with("claim a task", |c| {
            let id: Option<i64> = c
                .query_row(
                    "SELECT id FROM tasks WHERE state = 'queued' ORDER BY queued, id LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = id {
                c.execute(
                    "UPDATE tasks SET state = 'running', started = ?1 WHERE id = ?2",
                    params![crate::store::unix_now(), id],
                )?;
            }
            Ok(id)
        })?;
        match id {
            Some(id) => self.get(id),
            None => Ok(None),
        }
    }

    pub fn set_pid(&self, id: i64, pid: i32, start: u64) -> Result<()> {
        self.with("record a task's process", |c| {
            c.execute(
                "UPDATE tasks SET pid = ?1, pid_start = ?2 WHERE id = ?3",
                params![pid, start as i64, id],
            )
            .map(drop)
        })
    }

    /// Ends a task: its state, exit code and a message.
    pub fn finish(&self, id: i64, state: &str, code: Option<i32>, message: &str) -> Result<()> {
        self.with("finish a task", |c| {
            c.execute(
                "UPDATE tasks SET state = ?1, exit_code = ?2, message = ?3, finished = ?4,
                 pid = NULL WHERE id = ?5",
                params![state, code, message, crate::store::unix_now(), id],
            )
            .map(drop)
        })
    }

    /// Cancels a task that has not started (true), or marks a running one for cancelling.
    pub fn cancel_waiting(&self, id: i64) -> Result<bool> {
        self.with("cancel a task", |c| {
            c.execute(
                "UPDATE tasks SET state = 'cancelled', finished = ?1,
                 message = 'cancelled before it started'
                 WHERE id = ?2 AND state IN ('new', 'queued')",
                params![crate::store::unix_now(), id],
            )
            .map(|n| n == 1)
        })
    }

    pub fn request_cancel(&self, id: i64) -> Result<()> {
        self.with("cancel a task", |c| {
            c.execute("UPDATE tasks SET cancel_requested = 1 WHERE id = ?1", [id])
                .map(drop)
        })
    }

    /// Removes a task's row, its samples and its files.
    pub fn delete(&self, id: i64) -> Result<()> {
        self.with("delete a task", |c| {
            c.execute("DELETE FROM samples WHERE task = ?1", [id])?;
            c.execute("DELETE FROM tasks WHERE id = ?1", [id]).map(drop)
        })?;
        let dir = self.task_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &dir, e)),
        }
    }

    /// Records a resource sample of a running task.
    pub fn sample(&self, id: i64, s: &Sample) -> Result<()> {
        self.with("record a sample", |c| {
            c.execute(
                "INSERT INTO samples (task, t, cpu_seconds, rss_kib, disk_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    id,
                    s.t as i64,
                    s.cpu_seconds,
                    s.rss_kib as i64,
                    s.disk_bytes as i64
                ],
            )?;
            c.execute(
                "UPDATE tasks SET cpu_seconds = MAX(cpu_seconds, ?1), rss_kib = ?2,
                 peak_rss_kib = MAX(peak_rss_kib, ?2), disk_bytes = ?3 WHERE id = ?4",
                params![s.cpu_seconds, s.rss_kib as i64, s.disk_bytes as i64, id],
            )
            .map(drop)
        })
    }

    pub fn samples(&self, id: i64) -> Result<Vec<Sample>> {
        self.with("read samples", |c| {
            let mut st = c.prepare_cached(
                "SELECT t, cpu_seconds, rss_kib, disk_bytes FROM samples WHERE task = ?1
                 ORDER BY rowid",
            )?;
            let rows = st.query_map([id], |r| {
                Ok(Sample {
                    t: r.get::<_, i64>(0)? as u64,
                    cpu_seconds: r.get(1)?,
                    rss_kib: r.get::<_, i64>(2)? as u64,
                    disk_bytes: r.get::<_, i64>(3)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    /// Finished tasks beyond the newest `keep`, or finished before `cutoff` (unix seconds).
    pub fn expired(&self, keep: usize, cutoff: u64) -> Result<Vec<i64>> {
        let finished = self.select(
            "WHERE finished IS NOT NULL AND state NOT IN ('new', 'queued', 'running')
             ORDER BY finished DESC, id DESC",
            [],
        )?;
        Ok(finished
            .iter()
            .enumerate()
            .filter(|(i, t)| *i >= keep || t.finished.unwrap_or(0) < cutoff)
            .map(|(_, t)| t.id)
            .collect())
    }
}

fn task_of_row(r: &Row) -> rusqlite::Result<Task> {
    let options: String = r.get(2)?;
    let opt_u64 = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(|v| v as u64))
    };
    Ok(Task {
        id: r.get(0)?,
        state: r.get(1)?,
        options: serde_json::from_str(&options).unwrap_or_default(),
        project: r.get(3)?,
        created: r.get::<_, i64>(4)? as u64,
        queued: opt_u64(5)?,
        started: opt_u64(6)?,
        finished: opt_u64(7)?,
        exit_code: r.get(8)?,
        message: r.get(9)?,
        pid: r.get(10)?,
        pid_start: opt_u64(11)?,
        cancel_requested: r.get::<_, i64>(12)? != 0,
        resources: Resources {
            cpu_seconds: r.get(13)?,
            rss_kib: r.get::<_, i64>(14)? as u64,
            peak_rss_kib: r.get::<_, i64>(15)? as u64,
            disk_bytes: r.get::<_, i64>(16)? as u64,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_goes_from_new_to_finished_and_survives_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let tasks = Tasks::open(tmp.path()).unwrap();
        let id = tasks.create(&TaskOptions::default()).unwrap();
        assert!(!tasks.enqueue(id).unwrap(), "no bundle yet");
        assert!(tasks.set_project(id, "pkg").unwrap());
        assert!(tasks.enqueue(id).unwrap());
        assert!(!tasks.set_project(id, "other").unwrap(), "queued: fixed");
        let second = tasks.create(&TaskOptions::default()).unwrap();
        tasks.set_project(second, "pkg").unwrap();
        tasks.enqueue(second).unwrap();
        drop(tasks);
        let tasks = Tasks::open(tmp.path()).unwrap();
        let t = tasks.claim_next().unwrap().unwrap();
        assert_eq!((t.id, t.state.as_str()), (id, "running"));
        tasks
            .sample(
                id,
                &Sample {
                    t: 1,
                    cpu_seconds: 2.0,
                    rss_kib: 300,
                    disk_bytes: 4,
                },
            )
            .unwrap();
        tasks.finish(id, "passed", Some(0), "ok").unwrap();
        let t = tasks.get(id).unwrap().unwrap();
        assert_eq!(t.state, "passed");
        assert_eq!(t.resources.peak_rss_kib, 300);
        assert_eq!(tasks.in_state("queued").unwrap().len(), 1);
        assert_eq!(tasks.expired(0, 0).unwrap(), [id]);
        tasks.delete(id).unwrap();
        assert!(tasks.get(id).unwrap().is_none());
        assert!(tasks.samples(id).unwrap().is_empty());
    }
}
