//! Operator records (`P:o:{op}`, listed in `P:ops`): reading them with their versions and load
//! version, writing presence and connection changes optimistically, and their loads; who is on
//! duty from the summary `P:duty` (operator → capacity, kept by `commit.lua` with every record
//! write).

use redis::AsyncCommands;

use super::steps::OpWrite;
use super::{contended, corrupt, RedisStore, ATTEMPTS};
use crate::conversation::OperatorId;
use crate::store::{OnDuty, OperatorRecord, OperatorUpdate, StoreError};

/// An operator record as read, with its versions and console node.
#[derive(Debug, Clone)]
pub(super) struct LoadedOp {
    pub(super) version: u64,
    /// Grows whenever a conversation starts or stops being held by this operator.
    pub(super) load_version: u64,
    pub(super) rec: OperatorRecord,
    /// The node their console is open on (`""`: none).
    pub(super) node: String,
    /// The running sums `commit.lua` keeps of what they hold: weight of what is not a call,
    /// calls, offers pending. `None` on a record no step of this gateway has touched yet.
    pub(super) sums: Option<(u32, u32, u32)>,
}

impl LoadedOp {
    /// Their load and whether an offer is pending, from the running sums.
    pub(super) fn held(&self) -> Option<(u32, bool)> {
        let (weight, calls, offers) = self.sums?;
        Some((weight + calls * self.rec.capacity.max(1), offers > 0))
    }
}

/// An operator's hash as read: `v`, `d`, `n`, `l`, `w`, `p` and `o`.
type OpRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The fields of an operator's hash that [`parse_op`] reads.
const OP_FIELDS: [&str; 7] = ["v", "d", "n", "l", "w", "p", "o"];

fn parse_op((version, data, node, load, w, p, o): OpRow) -> Option<LoadedOp> {
    let version = version?.parse().ok()?;
    let rec = serde_json::from_str(&data?).ok()?;
    Some(op_of(version, rec, (node, load, w, p, o)))
}

/// An operator's hash as the dispatcher reads it at every dispatch: `v`, `n`, `l`, `w`, `p`
/// and `o`, not the record itself, which it reads only when `v` is not a version it knows
/// ([`RedisStore::dispatch_view`]).
type OpState = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The fields of [`OpState`].
const OP_STATE_FIELDS: [&str; 6] = ["v", "n", "l", "w", "p", "o"];

/// What goes with a record: `n`, `l`, `w`, `p` and `o`.
type OpRest = (
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

fn op_of(version: u64, rec: OperatorRecord, (node, load, w, p, o): OpRest) -> LoadedOp {
    let count = |x: Option<i64>| u32::try_from(x.unwrap_or(0).max(0)).unwrap_or(u32::MAX);
    LoadedOp {
        version,
        load_version: load.and_then(|l| l.parse().ok()).unwrap_or(0),
        rec,
        node: node.unwrap_or_default(),
        sums: w.map(|_| (count(w), count(p), count(o))),
    }
}

impl RedisStore {
    pub(super) async fn load_ops(&self) -> Result<Vec<LoadedOp>, StoreError> {
        let ids = self.members(self.key(&["ops"])).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hmget(self.key(&["o", id]), &OP_FIELDS);
        }
        let rows: Vec<OpRow> = self.query(pipe).await?;
        let mut ops: Vec<LoadedOp> = rows.into_iter().filter_map(parse_op).collect();
        ops.sort_by_key(|o| o.rec.id);
        Ok(ops)
    }

    /// [`crate::store::Store::on_duty`] from `P:duty` (one small hash, not every record: a
    /// person's position and wait estimate read it at every arrival). An empty summary is read
    /// from the records: nobody is on duty, or the records were written by a gateway from
    /// before the summary existed.
    pub(super) async fn duty(&self) -> Result<OnDuty, StoreError> {
        let key = self.key(&["duty"]);
        let caps: Vec<u32> = self
            .run(|mut c| {
                let key = key.clone();
                async move { c.hvals(&key).await }
            })
            .await?;
        if caps.is_empty() {
            let ops = self.load_ops().await?;
            return Ok(OnDuty::of(ops.iter().map(|o| &o.rec)));
        }
        Ok(OnDuty {
            operators: u32::try_from(caps.len()).unwrap_or(u32::MAX),
            capacity: caps.iter().sum(),
        })
    }

    /// The dispatcher's view in one round trip: every operator's record and the ids at the
    /// head of the queue (`P:qz`, up to `head_page` of the operators there are; the caller
    /// reads as many of them as it needs). The records are asked for by the ids the last read
    /// found, in the same pipeline as `P:ops` itself; if the set changed (an operator was
    /// added) the read is made again with the new ids.
    pub(super) async fn dispatch_view(
        &self,
        head: impl Fn(usize) -> usize,
    ) -> Result<(Vec<LoadedOp>, Vec<String>), StoreError> {
        let (ops_key, qz) = (self.key(&["ops"]), self.key(&["qz"]));
        for _ in 0..3 {
            let ids = self
                .op_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let mut pipe = redis::pipe();
            pipe.smembers(&ops_key);
            for id in &ids {
                pipe.hmget(self.key(&["o", id]), &OP_STATE_FIELDS);
            }
            pipe.zrange(&qz, 0, head(ids.len()) as isize - 1);
            let (mut members, rows, head_ids): (Vec<String>, Vec<OpState>, Vec<String>) = {
                let mut values: Vec<redis::Value> = self.query(pipe).await?;
                let bad = || corrupt("dispatcher's view");
                let head_ids =
                    redis::from_redis_value(values.pop().ok_or_else(bad)?).map_err(|_| bad())?;
                if values.is_empty() {
                    return Err(bad());
                }
                let members = redis::from_redis_value(values.remove(0)).map_err(|_| bad())?;
                let rows = values
                    .into_iter()
                    .map(redis::from_redis_value)
                    .collect::<Result<Vec<OpState>, _>>()
                    .map_err(|_| bad())?;
                (members, rows, head_ids)
            };
            members.sort();
            if members == ids {
                let mut ops = self.with_records(&ids, rows).await?;
                ops.sort_by_key(|o| o.rec.id);
                return Ok((ops, head_ids));
            }
            *self.op_ids.lock().unwrap_or_else(|e| e.into_inner()) = members;
        }
        // `P:ops` keeps changing under the reads: read it the plain way.
        let ops = self.load_ops().await?;
        let head_ids = self
            .run(|mut c| {
                let qz = qz.clone();
                let n = head(ops.len());
                async move { c.zrange(&qz, 0, n as isize - 1).await }
            })
            .await?;
        Ok((ops, head_ids))
    }

    /// The dispatcher's reads of `ids` made whole: each record from the copy kept of that
    /// version (`op_recs`: what this node read or wrote last), the others read in one round
    /// trip and kept. A record changes at each offer the dispatcher makes (it keeps what it
    /// wrote) and at presence changes; its loads change at every step and are read each time.
    async fn with_records(
        &self,
        ids: &[String],
        rows: Vec<OpState>,
    ) -> Result<Vec<LoadedOp>, StoreError> {
        let mut ops = Vec::with_capacity(rows.len());
        let mut unknown = Vec::new();
        {
            let mut known = self.op_recs.lock().unwrap_or_else(|e| e.into_inner());
            if known.len() > ids.len() {
                known.retain(|id, _| ids.binary_search(id).is_ok());
            }
            for (id, (version, node, load, w, p, o)) in ids.iter().zip(rows) {
                // No version: the record is gone.
                let Some(version) = version.and_then(|v| v.parse::<u64>().ok()) else {
                    continue;
                };
                match known.get(id) {
                    Some((v, rec)) if *v == version => {
                        ops.push(op_of(version, rec.clone(), (node, load, w, p, o)));
                    }
                    _ => unknown.push(id),
                }
            }
        }
        if unknown.is_empty() {
            return Ok(ops);
        }
        let mut pipe = redis::pipe();
        for id in &unknown {
            pipe.hmget(self.key(&["o", id]), &OP_FIELDS);
        }
        let rows: Vec<OpRow> = self.query(pipe).await?;
        let read: Vec<LoadedOp> = rows.into_iter().filter_map(parse_op).collect();
        self.keep_records(read.iter().map(|o| (o.version, &o.rec)));
        ops.extend(read);
        Ok(ops)
    }

    /// Keeps these versions of records for the dispatcher's next reads ([`Self::with_records`]).
    pub(super) fn keep_records<'a>(&self, recs: impl Iterator<Item = (u64, &'a OperatorRecord)>) {
        let mut known = self.op_recs.lock().unwrap_or_else(|e| e.into_inner());
        for (version, rec) in recs {
            known.insert(rec.id.to_string(), (version, rec.clone()));
        }
    }

    pub(super) async fn load_op(&self, id: OperatorId) -> Result<Option<LoadedOp>, StoreError> {
        let key = self.key(&["o", &id.to_string()]);
        let row: OpRow = self
            .run(|mut c| async move { c.hmget(&key, &OP_FIELDS).await })
            .await?;
        if row.0.is_none() {
            return Ok(None);
        }
        parse_op(row)
            .map(Some)
            .ok_or_else(|| corrupt("operator record"))
    }

    /// [`crate::store::Store::put_operator`], attributing a connected operator to this node.
    pub(super) async fn put_op(&self, record: OperatorRecord) -> Result<(), StoreError> {
        for attempt in 0..ATTEMPTS {
            let current = self.load_op(record.id).await?;
            let write = OpWrite {
                expect: current.as_ref().map_or(0, |c| c.version),
                expect_load: None,
                rec: &record,
                node: Some(if record.connected {
                    &self.opts.node
                } else {
                    ""
                }),
            };
            if self.commit(&[], &[write]).await? {
                return Ok(());
            }
            Self::back_off(attempt).await;
        }
        Err(contended())
    }

    /// Operator update, optimistic; `only_if_node` as in [`Self::apply_step`].
    pub(super) async fn update_op(
        &self,
        id: OperatorId,
        update: OperatorUpdate,
        only_if_node: Option<&str>,
    ) -> Result<Option<OperatorRecord>, StoreError> {
        for attempt in 0..ATTEMPTS {
            let Some(loaded) = self.load_op(id).await? else {
                return Ok(None);
            };
            if only_if_node.is_some_and(|n| n != loaded.node) {
                return Ok(None);
            }
            let mut rec = loaded.rec.clone();
            let node = match update {
                OperatorUpdate::Presence(p) => {
                    rec.presence = p;
                    None
                }
                OperatorUpdate::Connected => {
                    rec.connected = true;
                    rec.disconnected_since = None;
                    Some(self.opts.node.as_str())
                }
                OperatorUpdate::Disconnected { at } => {
                    if only_if_node.is_none()
                        && !loaded.node.is_empty()
                        && loaded.node != self.opts.node
                    {
                        // Their console is open on another node now.
                        return Ok(Some(loaded.rec));
                    }
                    rec.connected = false;
                    rec.disconnected_since = Some(at);
                    Some("")
                }
            };
            let write = OpWrite {
                expect: loaded.version,
                expect_load: None,
                rec: &rec,
                node,
            };
            if self.commit(&[], &[write]).await? {
                return Ok(Some(rec));
            }
            Self::back_off(attempt).await;
        }
        Err(contended())
    }

    /// [`crate::store::Store::operator_load`]: a record and the weight of what they hold, from
    /// the running sums on the record (one read, however many they hold: every accept sends the
    /// operator this, and reading each conversation they held was most of a burst's reads);
    /// only for a record without the sums (written before they existed) from the conversations.
    pub(super) async fn op_with_load(
        &self,
        id: OperatorId,
    ) -> Result<Option<(OperatorRecord, u32)>, StoreError> {
        let Some(op) = self.load_op(id).await? else {
            return Ok(None);
        };
        if let Some((load, _)) = op.held() {
            return Ok(Some((op.rec, load)));
        }
        let load = self
            .held(id)
            .await?
            .iter()
            .map(|c| c.weight_on(op.rec.capacity))
            .sum();
        Ok(Some((op.rec, load)))
    }
}
