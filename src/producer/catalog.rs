//! The simulated shop: products, pages, referrers, places and devices.
//!
//! Static tables, weighted where the real world is skewed (most traffic comes
//! from a few countries and from desktop Chrome), so that the analytics
//! reports have the shape a real shop's would.

pub struct Product {
    pub id: &'static str,
    pub slug: &'static str,
    pub name: &'static str,
    pub category: &'static str,
    pub price: f64,
}

const fn p(id: &'static str, slug: &'static str, name: &'static str, category: &'static str, price: f64) -> Product {
    Product {
        id,
        slug,
        name,
        category,
        price,
    }
}

/// Prices are skewed cheap; a few items are dear enough that ordinary carts
/// occasionally cross the default HIGH_VALUE_THRESHOLD ($500), as in a real shop.
pub const PRODUCTS: &[Product] = &[
    p("prod-001", "laptop-pro-14", "Laptop Pro 14", "electronics", 999.99),
    p("prod-002", "wireless-mouse", "Wireless Mouse", "electronics", 24.99),
    p(
        "prod-003",
        "mechanical-keyboard",
        "Mechanical Keyboard",
        "electronics",
        89.99,
    ),
    p("prod-004", "usb-c-hub", "USB-C Hub", "electronics", 39.99),
    p(
        "prod-005",
        "noise-cancelling-headphones",
        "Noise-Cancelling Headphones",
        "electronics",
        249.99,
    ),
    p("prod-006", "smartphone-x", "Smartphone X", "electronics", 699.00),
    p("prod-007", "running-shoes", "Running Shoes", "sports", 119.95),
    p("prod-008", "yoga-mat", "Yoga Mat", "sports", 29.99),
    p("prod-009", "water-bottle", "Insulated Water Bottle", "sports", 19.99),
    p("prod-010", "coffee-maker", "Coffee Maker", "home", 79.00),
    p("prod-011", "chef-knife", "Chef's Knife", "home", 59.50),
    p("prod-012", "desk-lamp", "LED Desk Lamp", "home", 34.90),
    p("prod-013", "office-chair", "Ergonomic Office Chair", "home", 329.00),
    p("prod-014", "rust-book", "The Rust Programming Language", "books", 39.95),
    p("prod-015", "kafka-guide", "Kafka: The Definitive Guide", "books", 49.99),
    p("prod-016", "novel-bestseller", "Bestselling Novel", "books", 14.99),
    p("prod-017", "t-shirt", "Organic T-Shirt", "clothing", 22.00),
    p("prod-018", "winter-jacket", "Winter Jacket", "clothing", 189.00),
    p("prod-019", "sneakers", "Everyday Sneakers", "clothing", 74.95),
    p("prod-020", "gift-card-25", "Gift Card $25", "gifts", 25.00),
];

/// Relative popularity of each product (same order as [`PRODUCTS`]).
pub const PRODUCT_WEIGHTS: &[u32] = &[4, 10, 6, 8, 5, 3, 6, 7, 9, 6, 5, 7, 2, 5, 4, 8, 9, 3, 6, 5];

/// Dear items card testers never touch and high-value fraudsters favour.
pub const PREMIUM_PRODUCTS: &[usize] = &[0, 5, 12];

pub const CATEGORIES: &[&str] = &["electronics", "sports", "home", "books", "clothing", "gifts"];

/// Non-product pages and their weights.
pub const PAGES: &[(&str, u32)] = &[
    ("/", 20),
    ("/products", 14),
    ("/deals", 6),
    ("/about", 2),
    ("/blog/how-we-ship", 2),
    ("/help/returns", 2),
    ("/account", 3),
];

pub const SEARCH_QUERIES: &[&str] = &[
    "laptop",
    "headphones",
    "running shoes",
    "coffee",
    "office chair",
    "rust book",
    "gift card",
    "keyboard",
    "jacket",
    "yoga",
    "usb c",
    "phone",
    "lamp",
    "kafka",
];

/// Where a simulated session comes from: the referrer of its landing page
/// (`None`: direct, `"referrer": null`), the `utm_*` query of its landing
/// URL, how often, and how likely it is to buy relative to the average
/// session (search ads and the newsletter sell best, social visits least).
pub struct Acquisition {
    pub referrer: Option<&'static str>,
    pub utm: Option<&'static str>,
    pub weight: u32,
    pub buys: f64,
}

const fn acquired(referrer: Option<&'static str>, utm: Option<&'static str>, weight: u32, buys: f64) -> Acquisition {
    Acquisition {
        referrer,
        utm,
        weight,
        buys,
    }
}

pub const ACQUISITION: &[Acquisition] = &[
    acquired(None, None, 30, 1.0),
    acquired(Some("https://www.google.com/"), None, 25, 1.0),
    acquired(Some("https://www.bing.com/"), None, 5, 0.9),
    acquired(
        Some("https://www.google.com/"),
        Some("utm_source=google&utm_medium=cpc&utm_campaign=winter_sale"),
        10,
        1.8,
    ),
    acquired(Some("https://www.facebook.com/"), None, 8, 0.5),
    acquired(
        Some("https://l.instagram.com/"),
        Some("utm_source=instagram&utm_medium=paid_social&utm_campaign=new_arrivals"),
        5,
        0.8,
    ),
    acquired(Some("https://t.co/"), None, 4, 0.4),
    acquired(
        None,
        Some("utm_source=newsletter&utm_medium=email&utm_campaign=weekly_digest"),
        8,
        2.5,
    ),
    acquired(Some("https://www.techreviews.example/best-desk-lamps"), None, 5, 1.5),
];

/// The average of [`ACQUISITION`]'s `buys`, weighted: dividing by it keeps
/// the overall share of buyers (and so the event mix) where it was.
pub fn mean_buys() -> f64 {
    let total: u32 = ACQUISITION.iter().map(|a| a.weight).sum();
    ACQUISITION.iter().map(|a| a.buys * f64::from(a.weight)).sum::<f64>() / f64::from(total)
}

pub struct Place {
    pub country: &'static str,
    pub city: &'static str,
    pub timezone: &'static str,
    /// First octet of the simulated addresses of this place.
    pub ip_octet: u8,
    pub weight: u32,
}

const fn place(country: &'static str, city: &'static str, timezone: &'static str, ip_octet: u8, weight: u32) -> Place {
    Place {
        country,
        city,
        timezone,
        ip_octet,
        weight,
    }
}

pub const PLACES: &[Place] = &[
    place("US", "New York", "America/New_York", 73, 12),
    place("US", "San Francisco", "America/Los_Angeles", 98, 8),
    place("US", "Chicago", "America/Chicago", 76, 6),
    place("US", "Austin", "America/Chicago", 70, 4),
    place("GB", "London", "Europe/London", 81, 8),
    place("GB", "Manchester", "Europe/London", 86, 3),
    place("DE", "Berlin", "Europe/Berlin", 91, 6),
    place("DE", "Munich", "Europe/Berlin", 93, 3),
    place("FR", "Paris", "Europe/Paris", 82, 5),
    place("NL", "Amsterdam", "Europe/Amsterdam", 145, 3),
    place("JP", "Tokyo", "Asia/Tokyo", 126, 5),
    place("IN", "Mumbai", "Asia/Kolkata", 117, 5),
    place("IN", "Bangalore", "Asia/Kolkata", 106, 4),
    place("BR", "São Paulo", "America/Sao_Paulo", 177, 4),
    place("CA", "Toronto", "America/Toronto", 99, 4),
    place("AU", "Sydney", "Australia/Sydney", 101, 3),
];

/// Where account-takeover and bot traffic comes from in the simulation.
pub const HOSTILE_PLACES: &[Place] = &[
    place("RU", "Moscow", "Europe/Moscow", 95, 1),
    place("NG", "Lagos", "Africa/Lagos", 105, 1),
    place("VN", "Hanoi", "Asia/Ho_Chi_Minh", 113, 1),
    place("RO", "Bucharest", "Europe/Bucharest", 188, 1),
];

pub struct DeviceProfile {
    pub device_type: &'static str,
    pub os: &'static str,
    pub browser: &'static str,
    pub user_agent: &'static str,
    pub weight: u32,
}

const fn d(
    device_type: &'static str,
    os: &'static str,
    browser: &'static str,
    user_agent: &'static str,
    weight: u32,
) -> DeviceProfile {
    DeviceProfile {
        device_type,
        os,
        browser,
        user_agent,
        weight,
    }
}

pub const DEVICES: &[DeviceProfile] = &[
    d(
        "desktop",
        "Windows",
        "Chrome",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        22,
    ),
    d(
        "desktop",
        "Windows",
        "Edge",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
        6,
    ),
    d(
        "desktop",
        "Windows",
        "Firefox",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
        5,
    ),
    d(
        "desktop",
        "macOS",
        "Safari",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
        7,
    ),
    d(
        "desktop",
        "macOS",
        "Chrome",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        7,
    ),
    d(
        "desktop",
        "Linux",
        "Firefox",
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        3,
    ),
    d(
        "mobile",
        "iOS",
        "Safari",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
        20,
    ),
    d(
        "mobile",
        "Android",
        "Chrome",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
        22,
    ),
    d(
        "tablet",
        "iPadOS",
        "Safari",
        "Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
        5,
    ),
    d(
        "tablet",
        "Android",
        "Chrome",
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        3,
    ),
];

/// What bots announce themselves as.
pub const BOT_DEVICES: &[DeviceProfile] = &[
    d(
        "desktop",
        "Linux",
        "HeadlessChrome",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
        1,
    ),
    d("desktop", "Linux", "python-requests", "python-requests/2.31.0", 1),
];

/// The shop's origin, prefixed to every page path.
pub const ORIGIN: &str = "https://shop.example.com";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_consistent() {
        assert_eq!(PRODUCTS.len(), PRODUCT_WEIGHTS.len());
        for &i in PREMIUM_PRODUCTS {
            assert!(PRODUCTS[i].price >= 300.0);
        }
        for p in PRODUCTS {
            assert!(CATEGORIES.contains(&p.category), "{}", p.category);
        }
        for hostile in HOSTILE_PLACES {
            assert!(PLACES.iter().all(|p| p.country != hostile.country));
        }
    }
}
