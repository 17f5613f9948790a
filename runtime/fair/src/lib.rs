//! Fair queuing across tenants: a bounded queue that serves flows by their virtual
//! token counters, with strict priority bands and fair shedding.
//!
//! The policy is the Virtual Token Counter of Sheng et al., "Fairness in Serving Large
//! Language Models" (OSDI '24). Every flow (a tenant, or a gateway's fairness id) has a
//! counter of the service it received, in tokens divided by its weight; the next request
//! served is the head of the backlogged flow with the lowest counter. A flow that was
//! idle is lifted to the lowest counter among the backlogged flows when it comes back,
//! so idling earns no credit. Service is charged when it happens ([`FairQueue::charge`]):
//! prompt tokens when a request is dispatched, generated tokens as they are produced.
//! Between two backlogged flows the service difference stays within a bound set by the
//! largest single request; the queue is work-conserving (it never idles while anything
//! waits); with one flow it is FIFO.
//!
//! Bands are strict: a higher band is always served first; under saturation the lowest
//! band is shed first, and within a band the flow holding the most queued requests
//! gives up its newest one, so a flood cannot take the whole queue.
//!
//! The crate is pure (no clocks, no threads, no I/O): the executor and the generation
//! engine own one each on their thread.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Fixed-point scale of counters: a charge of `cost` adds `cost * SCALE / weight`.
pub const SCALE: u64 = 1000;

/// Most flows whose state is kept while idle; beyond it, idle flows whose counter
/// would be lifted anyway are forgotten (which changes nothing they are owed).
const MAX_IDLE_FLOWS: usize = 1024;

/// Which flow a request belongs to: its band and its fairness key (a tenant name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Priority band; higher is served first and shed last.
    pub band: i32,
    /// Fairness key: requests of one key share one counter.
    pub key: String,
}

/// A flow as a request presents it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Band and key.
    pub key: FlowKey,
    /// Share while backlogged: a flow of weight 2 gets twice the tokens of weight 1.
    pub weight: u32,
}

impl Flow {
    /// A flow of `key` in `band` with `weight` (0 is taken as 1).
    pub fn new(band: i32, key: impl Into<String>, weight: u32) -> Self {
        Self {
            key: FlowKey {
                band,
                key: key.into(),
            },
            weight: weight.max(1),
        }
    }

    /// The only flow of a queue that does not tell tenants apart (FIFO).
    pub fn single() -> Self {
        Self::new(0, "", 1)
    }
}

/// What [`FairQueue::push`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed<T> {
    /// The item waits in its flow.
    Queued,
    /// The item waits; the queue was full and this one (another flow's newest, in the
    /// lowest band or the longest flow) was taken out to make room: refuse it.
    Shed(T),
    /// The queue is full of requests that rank above it: refuse it.
    Refused(T),
}

struct Entry<T> {
    seq: u64,
    item: T,
}

struct FlowState<T> {
    counter: u64,
    weight: u32,
    queue: VecDeque<Entry<T>>,
}

struct Band<T> {
    flows: HashMap<String, FlowState<T>>,
    /// The counter of the flow served last: where a flow coming back to an empty
    /// band is lifted to.
    floor: u64,
    queued: usize,
}

impl<T> Default for Band<T> {
    fn default() -> Self {
        Self {
            flows: HashMap::new(),
            floor: 0,
            queued: 0,
        }
    }
}

impl<T> Band<T> {
    /// The lowest counter among backlogged flows other than `except`.
    fn min_backlogged(&self, except: &str) -> Option<u64> {
        self.flows
            .iter()
            .filter(|(key, flow)| key.as_str() != except && !flow.queue.is_empty())
            .map(|(_, flow)| flow.counter)
            .min()
    }

    /// Backlogged flows in service order: lowest counter, then oldest head.
    fn order(&self) -> Vec<(&str, u64, u64)> {
        let mut heads: Vec<(&str, u64, u64)> = self
            .flows
            .iter()
            .filter_map(|(key, flow)| {
                flow.queue
                    .front()
                    .map(|head| (key.as_str(), flow.counter, head.seq))
            })
            .collect();
        heads.sort_unstable_by_key(|&(_, counter, seq)| (counter, seq));
        heads
    }

    /// The flow that gives up a request under saturation: most queued, then highest
    /// counter, then the newest tail.
    fn longest(&self) -> Option<(&str, usize)> {
        self.flows
            .iter()
            .filter(|(_, flow)| !flow.queue.is_empty())
            .max_by_key(|(_, flow)| {
                (
                    flow.queue.len(),
                    flow.counter,
                    flow.queue.back().map_or(0, |e| e.seq),
                )
            })
            .map(|(key, flow)| (key.as_str(), flow.queue.len()))
    }

    /// Forgets idle flows that a comeback would lift to the floor anyway.
    fn forget_idle(&mut self) {
        let idle = self.flows.values().filter(|f| f.queue.is_empty()).count();
        if idle > MAX_IDLE_FLOWS {
            let floor = self.floor;
            self.flows
                .retain(|_, flow| !flow.queue.is_empty() || flow.counter > floor);
        }
    }
}

/// A bounded queue served fairly across flows; see the crate docs.
pub struct FairQueue<T> {
    bands: BTreeMap<i32, Band<T>>,
    capacity: usize,
    len: usize,
    next_seq: u64,
}

impl<T> FairQueue<T> {
    /// An empty queue holding at most `capacity` items (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            bands: BTreeMap::new(),
            capacity: capacity.max(1),
            len: 0,
            next_seq: 0,
        }
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most items waiting at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the bound; items already waiting stay.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    /// Queues `item` in `flow`, making room by shedding when the queue is full.
    pub fn push(&mut self, flow: &Flow, item: T) -> Pushed<T> {
        if self.len < self.capacity {
            self.enqueue(flow, item);
            return Pushed::Queued;
        }
        let Some(lowest) = self
            .bands
            .iter()
            .find(|(_, band)| band.queued > 0)
            .map(|(band, _)| *band)
        else {
            self.enqueue(flow, item);
            return Pushed::Queued;
        };
        let victim = match flow.key.band.cmp(&lowest) {
            std::cmp::Ordering::Less => None,
            std::cmp::Ordering::Greater => {
                self.bands[&lowest].longest().map(|(key, _)| key.to_owned())
            }
            std::cmp::Ordering::Equal => {
                let band = &self.bands[&lowest];
                let own = band.flows.get(&flow.key.key).map_or(0, |f| f.queue.len());
                band.longest()
                    .filter(|&(key, queued)| key != flow.key.key && queued >= own + 2)
                    .map(|(key, _)| key.to_owned())
            }
        };
        let Some(victim) = victim else {
            return Pushed::Refused(item);
        };
        let shed = self.remove_newest(lowest, &victim);
        self.enqueue(flow, item);
        match shed {
            Some(shed) => Pushed::Shed(shed),
            None => Pushed::Queued,
        }
    }

    fn enqueue(&mut self, flow: &Flow, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let band = self.bands.entry(flow.key.band).or_default();
        let lift = band.min_backlogged(&flow.key.key).unwrap_or(band.floor);
        let state = band
            .flows
            .entry(flow.key.key.clone())
            .or_insert_with(|| FlowState {
                counter: 0,
                weight: flow.weight,
                queue: VecDeque::new(),
            });
        state.weight = flow.weight;
        if state.queue.is_empty() {
            state.counter = state.counter.max(lift);
        }
        state.queue.push_back(Entry { seq, item });
        band.queued += 1;
        self.len += 1;
    }

    fn remove_newest(&mut self, band: i32, key: &str) -> Option<T> {
        let state = self.bands.get_mut(&band)?;
        let entry = state.flows.get_mut(key)?.queue.pop_back()?;
        state.queued -= 1;
        self.len -= 1;
        Some(entry.item)
    }

    /// Takes the next item: the head of the backlogged flow with the lowest counter in
    /// the highest band. Charge its cost with [`FairQueue::charge`].
    pub fn pop(&mut self) -> Option<(FlowKey, T)> {
        let (band_id, key, counter) = self.bands.iter().rev().find_map(|(band_id, band)| {
            band.flows
                .iter()
                .filter_map(|(key, flow)| {
                    flow.queue.front().map(|head| (flow.counter, head.seq, key))
                })
                .min()
                .map(|(counter, _, key)| (*band_id, key.clone(), counter))
        })?;
        self.take(band_id, key, counter, 0)
    }

    /// Like [`FairQueue::pop`], but takes only an item that satisfies `accept`: flows
    /// in service order, each offering its oldest acceptable item (a batch takes only
    /// compatible work, and within a flow it keeps arrival order among what fits).
    pub fn pop_where(&mut self, mut accept: impl FnMut(&T) -> bool) -> Option<(FlowKey, T)> {
        let mut chosen = None;
        'bands: for (band_id, band) in self.bands.iter().rev() {
            if band.queued == 0 {
                continue;
            }
            for (key, counter, _) in band.order() {
                if let Some(position) = band.flows[key].queue.iter().position(|e| accept(&e.item)) {
                    chosen = Some((*band_id, key.to_owned(), counter, position));
                    break 'bands;
                }
            }
        }
        let (band_id, key, counter, position) = chosen?;
        self.take(band_id, key, counter, position)
    }

    /// Removes the item at `position` of `key`'s flow, served at `counter`.
    fn take(
        &mut self,
        band_id: i32,
        key: String,
        counter: u64,
        position: usize,
    ) -> Option<(FlowKey, T)> {
        let band = self.bands.get_mut(&band_id)?;
        let entry = band.flows.get_mut(&key)?.queue.remove(position)?;
        band.queued -= 1;
        band.floor = band.floor.max(counter);
        self.len -= 1;
        band.forget_idle();
        Some((FlowKey { band: band_id, key }, entry.item))
    }

    /// Charges `cost` tokens of service to `key` (divided by its weight). A flow that
    /// was forgotten while idle starts again from its band's floor.
    pub fn charge(&mut self, key: &FlowKey, cost: u64) {
        let band = self.bands.entry(key.band).or_default();
        let floor = band.floor;
        let state = band
            .flows
            .entry(key.key.clone())
            .or_insert_with(|| FlowState {
                counter: floor,
                weight: 1,
                queue: VecDeque::new(),
            });
        let add = cost.saturating_mul(SCALE) / u64::from(state.weight.max(1));
        state.counter = state.counter.saturating_add(add);
        let counter = state.counter;
        // With nothing backlogged, a flow that comes back starts where the last
        // served one got to (the paper's "max over the clients that left last").
        if band.queued == 0 {
            band.floor = band.floor.max(counter);
        }
    }

    /// The counter of `key`, in tokens × [`SCALE`] / weight.
    pub fn counter(&self, key: &FlowKey) -> Option<u64> {
        self.bands
            .get(&key.band)?
            .flows
            .get(&key.key)
            .map(|f| f.counter)
    }

    /// Items waiting in `key`'s flow.
    pub fn queued(&self, key: &FlowKey) -> usize {
        self.bands
            .get(&key.band)
            .and_then(|band| band.flows.get(&key.key))
            .map_or(0, |f| f.queue.len())
    }

    /// Every waiting item, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.bands
            .values()
            .flat_map(|band| band.flows.values())
            .flat_map(|flow| flow.queue.iter().map(|e| &e.item))
    }

    /// Takes out every waiting item for which `remove` is true (expired, cancelled),
    /// keeping the others in place.
    pub fn drain_where(&mut self, mut remove: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        for band in self.bands.values_mut() {
            for flow in band.flows.values_mut() {
                let mut kept = VecDeque::with_capacity(flow.queue.len());
                for entry in flow.queue.drain(..) {
                    if remove(&entry.item) {
                        removed.push(entry.item);
                    } else {
                        kept.push_back(entry);
                    }
                }
                flow.queue = kept;
            }
        }
        self.recount();
        removed
    }

    fn recount(&mut self) {
        let mut total = 0;
        for band in self.bands.values_mut() {
            band.queued = band.flows.values().map(|f| f.queue.len()).sum();
            total += band.queued;
        }
        self.len = total;
    }
}

#[cfg(test)]
mod tests;

/// A request's place in fair queuing: its flow, and how its tokens are weighed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fairness {
    /// The flow it is queued and charged in.
    pub flow: Flow,
    /// Weight of a prompt token (or a tensor row).
    pub input_weight: u32,
    /// Weight of a generated token.
    pub output_weight: u32,
}

impl Default for Fairness {
    /// One flow, unit weights: FIFO.
    fn default() -> Self {
        Self {
            flow: Flow::single(),
            input_weight: 1,
            output_weight: 1,
        }
    }
}

impl Fairness {
    /// The cost of reading `tokens` prompt tokens (or tensor rows).
    pub fn input_cost(&self, tokens: u64) -> u64 {
        tokens.saturating_mul(u64::from(self.input_weight))
    }

    /// The cost of generating `tokens` tokens.
    pub fn output_cost(&self, tokens: u64) -> u64 {
        tokens.saturating_mul(u64::from(self.output_weight))
    }
}
