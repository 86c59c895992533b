//! The metro network: lines of stations at known positions, and the shortest distance
//! between any two stations, which is what a metro fare is priced on.
//!
//! A station that appears on several lines (by the same id) is an interchange; changing
//! lines there costs no distance. Distances are whole metres. The network is small (a
//! city has hundreds of stations, not millions), so every pair's distance is computed
//! once when the fare table is loaded (Dijkstra from each station) and a TapOut only
//! reads a matrix.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::Deserialize;

/// Most stations a network may have (the distance matrix is stations² × 4 bytes).
pub const MAX_STATIONS: usize = 2_000;
/// Longest distance between neighbouring stations: 100 km.
pub const MAX_GAP_M: u32 = 100_000;

/// One line as the fare table writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// The line's id, e.g. `"1"`.
    pub id: String,
    /// Its stations in order along the line.
    pub stations: Vec<StopConfig>,
}

/// A station on a line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopConfig {
    /// The station's id; the same id on two lines is one interchange station.
    pub id: String,
    /// Position along the line, metres from its first station (strictly increasing).
    pub at_m: u32,
}

/// Why lines do not make a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// Two lines share an id.
    #[error("line {0} is defined twice")]
    DuplicateLine(String),
    /// A line has fewer than two stations.
    #[error("line {0} needs at least two stations")]
    ShortLine(String),
    /// A station appears twice on one line.
    #[error("station {station} appears twice on line {line}")]
    RepeatedStation { line: String, station: String },
    /// Positions do not increase, or neighbours are too far apart.
    #[error("line {line}: station {station} must lie 1 m to 100 km after the one before")]
    BadPosition { line: String, station: String },
    /// An empty station id.
    #[error("line {0} has a station without an id")]
    EmptyStation(String),
    /// More stations than [`MAX_STATIONS`].
    #[error("more than {MAX_STATIONS} stations")]
    TooManyStations,
}

/// The network, with every pair's shortest distance.
#[derive(Debug, Clone)]
pub struct Network {
    index: HashMap<String, usize>,
    /// `distance[a * n + b]`: metres from a to b; `u32::MAX` where no path exists.
    distance: Vec<u32>,
}

impl Network {
    /// Builds the network from `lines`, checking them (see [`NetworkError`]).
    pub fn new(lines: &[LineConfig]) -> Result<Self, NetworkError> {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut edges: Vec<Vec<(usize, u32)>> = Vec::new();
        let mut line_ids = std::collections::HashSet::new();
        for line in lines {
            if !line_ids.insert(line.id.as_str()) {
                return Err(NetworkError::DuplicateLine(line.id.clone()));
            }
            if line.stations.len() < 2 {
                return Err(NetworkError::ShortLine(line.id.clone()));
            }
            let mut on_line = std::collections::HashSet::new();
            let mut previous: Option<(usize, u32)> = None;
            for stop in &line.stations {
                if stop.id.is_empty() {
                    return Err(NetworkError::EmptyStation(line.id.clone()));
                }
                if !on_line.insert(stop.id.as_str()) {
                    return Err(NetworkError::RepeatedStation {
                        line: line.id.clone(),
                        station: stop.id.clone(),
                    });
                }
                let next = index.len();
                let at = *index.entry(stop.id.clone()).or_insert(next);
                if at == edges.len() {
                    if edges.len() == MAX_STATIONS {
                        return Err(NetworkError::TooManyStations);
                    }
                    edges.push(Vec::new());
                }
                if let Some((before, before_m)) = previous {
                    let gap = stop.at_m.saturating_sub(before_m);
                    if gap == 0 || gap > MAX_GAP_M {
                        return Err(NetworkError::BadPosition {
                            line: line.id.clone(),
                            station: stop.id.clone(),
                        });
                    }
                    edges[before].push((at, gap));
                    edges[at].push((before, gap));
                }
                previous = Some((at, stop.at_m));
            }
        }
        let n = edges.len();
        let mut distance = vec![u32::MAX; n * n];
        for from in 0..n {
            shortest_from(&edges, from, &mut distance[from * n..(from + 1) * n]);
        }
        Ok(Network { index, distance })
    }

    /// Whether `station` is in the network.
    pub fn has_station(&self, station: &str) -> bool {
        self.index.contains_key(station)
    }

    /// Metres between two stations by the shortest path; `None` if either is unknown
    /// or no path joins them.
    pub fn distance_m(&self, from: &str, to: &str) -> Option<u32> {
        let n = self.index.len();
        let (a, b) = (*self.index.get(from)?, *self.index.get(to)?);
        Some(self.distance[a * n + b]).filter(|&d| d != u32::MAX)
    }

    /// The longest shortest path between two joined stations.
    pub fn diameter_m(&self) -> u32 {
        self.distance
            .iter()
            .copied()
            .filter(|&d| d != u32::MAX)
            .max()
            .unwrap_or(0)
    }
}

/// Dijkstra from `from`, writing metres into `out` (one slot per station). Sums stay
/// below `MAX_STATIONS * MAX_GAP_M` = 2·10⁸, well inside `u32`.
fn shortest_from(edges: &[Vec<(usize, u32)>], from: usize, out: &mut [u32]) {
    let mut heap = BinaryHeap::new();
    out[from] = 0;
    heap.push(Reverse((0u32, from)));
    while let Some(Reverse((d, at))) = heap.pop() {
        if d > out[at] {
            continue;
        }
        for &(next, gap) in &edges[at] {
            let through = d.saturating_add(gap);
            if through < out[next] {
                out[next] = through;
                heap.push(Reverse((through, next)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, stops: &[(&str, u32)]) -> LineConfig {
        LineConfig {
            id: id.to_owned(),
            stations: stops
                .iter()
                .map(|(s, at)| StopConfig {
                    id: (*s).to_owned(),
                    at_m: *at,
                })
                .collect(),
        }
    }

    #[test]
    fn interchanges_join_lines_and_the_shortest_path_wins() {
        // A ring of three lines: a-b-c on 1, c-d on 2, d-a on 3.
        let network = Network::new(&[
            line("1", &[("a", 0), ("b", 1000), ("c", 5000)]),
            line("2", &[("c", 0), ("d", 1000)]),
            line("3", &[("d", 0), ("a", 2000)]),
        ])
        .unwrap();
        assert_eq!(network.distance_m("a", "b"), Some(1000));
        assert_eq!(network.distance_m("a", "c"), Some(3000), "via d, not via b");
        assert_eq!(network.distance_m("c", "a"), Some(3000));
        assert_eq!(network.distance_m("b", "b"), Some(0));
        assert_eq!(network.distance_m("a", "z"), None);
        assert_eq!(network.diameter_m(), 4000, "b to c, either way round");
    }

    #[test]
    fn separate_networks_have_no_distance() {
        let network = Network::new(&[
            line("1", &[("a", 0), ("b", 1000)]),
            line("2", &[("c", 0), ("d", 1000)]),
        ])
        .unwrap();
        assert_eq!(network.distance_m("a", "d"), None);
    }

    #[test]
    fn malformed_lines_are_refused_with_their_reason() {
        assert!(matches!(
            Network::new(&[line("1", &[("a", 0)])]),
            Err(NetworkError::ShortLine(_))
        ));
        assert!(matches!(
            Network::new(&[line("1", &[("a", 0), ("b", 0)])]),
            Err(NetworkError::BadPosition { .. })
        ));
        assert!(matches!(
            Network::new(&[line("1", &[("a", 500), ("b", 100)])]),
            Err(NetworkError::BadPosition { .. })
        ));
        assert!(matches!(
            Network::new(&[line("1", &[("a", 0), ("b", MAX_GAP_M + 1)])]),
            Err(NetworkError::BadPosition { .. })
        ));
        assert!(matches!(
            Network::new(&[line("1", &[("a", 0), ("b", 10), ("a", 20)])]),
            Err(NetworkError::RepeatedStation { .. })
        ));
        assert!(matches!(
            Network::new(&[
                line("1", &[("a", 0), ("b", 10)]),
                line("1", &[("c", 0), ("d", 10)])
            ]),
            Err(NetworkError::DuplicateLine(_))
        ));
        assert!(matches!(
            Network::new(&[line("1", &[("", 0), ("b", 10)])]),
            Err(NetworkError::EmptyStation(_))
        ));
    }
}
