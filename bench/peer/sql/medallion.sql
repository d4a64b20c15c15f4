-- The SPEC's silver and gold as plain SQL: the benchmark's peers (issue 11)
-- and, in PostgreSQL, an independent computation the integration tests
-- compare the extension with, row for row.
--
-- One text for PostgreSQL and DuckDB: what differs between them is in the
-- helpers of prelude.<engine>.sql. Input: raw_<table>, every field as text
-- plus batch (1, 2, ... in the order the batches were delivered) and rn,
-- the row's position in its file: the latest batch wins, then the last row
-- in the file, among the valid rows. Output:
-- s_<table> (silver), s_quarantine, s_duplicates, g_customer_360, g_bridge.
-- Text order is byte order: PostgreSQL runs this in a database whose
-- collation is C, DuckDB's default is binary.
--
-- Each silver table: c_<table>, every row with its fields cleaned and the
-- first rule it fails (presence, type, value, reference, as silver/spec.rs
-- lists them), then s_<table>, the winner per key among the valid rows.
-- (OFFSET 0 keeps each cleaned field computed once: PostgreSQL would
-- otherwise inline it into every rule that reads it.)

-- phase: silver

-- customers
CREATE TABLE c_customers AS
SELECT *, CASE WHEN customer_id IS NULL THEN 'customer_id_present'
               WHEN customer_unique_id IS NULL THEN 'customer_unique_id_present'
               WHEN zip IS NOT NULL AND NOT is_zip(zip) THEN 'customer_zip_type'
          END AS reason
  FROM (
        SELECT batch, rn, id_or_null(customer_id) AS customer_id, id_or_null(customer_unique_id) AS customer_unique_id,
               blank_null(customer_zip_code_prefix) AS zip, place(customer_city) AS customer_city,
               place(customer_state) AS customer_state
          FROM raw_customers
         OFFSET 0
  ) t;
CREATE TABLE s_customers AS
SELECT customer_id, customer_unique_id,
       zip_value(zip) AS customer_zip,
       customer_city, customer_state
  FROM (SELECT *, row_number() OVER (PARTITION BY customer_id ORDER BY batch DESC, rn DESC) AS pick
          FROM c_customers WHERE reason IS NULL) v
 WHERE pick = 1;

-- orders
CREATE TABLE c_orders AS
SELECT *, CASE WHEN order_id IS NULL THEN 'order_id_present'
               WHEN customer_id IS NULL THEN 'customer_id_present'
               WHEN order_status IS NULL THEN 'order_status_present'
               WHEN purchase IS NOT NULL AND NOT is_timestamp(purchase) THEN 'order_purchase_timestamp_type'
               WHEN approved IS NOT NULL AND NOT is_timestamp(approved) THEN 'order_approved_at_type'
               WHEN carrier IS NOT NULL AND NOT is_timestamp(carrier) THEN 'order_delivered_carrier_date_type'
               WHEN delivered IS NOT NULL AND NOT is_timestamp(delivered) THEN 'order_delivered_customer_date_type'
               WHEN estimated IS NOT NULL AND NOT is_timestamp(estimated) THEN 'order_estimated_delivery_date_type'
               WHEN order_status NOT IN ('created', 'approved', 'invoiced', 'processing', 'shipped', 'delivered',
                                         'canceled', 'unavailable') THEN 'order_status_known'
               WHEN order_status = 'delivered' AND delivered IS NULL THEN 'delivered_has_delivery_date'
               WHEN to_timestamp_of(delivered) < to_timestamp_of(purchase) THEN 'delivery_not_before_purchase'
               WHEN customer_id NOT IN (SELECT customer_id FROM s_customers) THEN 'customer_exists'
          END AS reason
  FROM (
        SELECT batch, rn, id_or_null(order_id) AS order_id, id_or_null(customer_id) AS customer_id,
               lower(blank_null(order_status)) AS order_status,
               blank_null(order_purchase_timestamp) AS purchase, blank_null(order_approved_at) AS approved,
               blank_null(order_delivered_carrier_date) AS carrier, blank_null(order_delivered_customer_date) AS delivered,
               blank_null(order_estimated_delivery_date) AS estimated
          FROM raw_orders
         OFFSET 0
  ) t;
CREATE TABLE s_orders AS
SELECT order_id, customer_id, order_status, to_timestamp_of(purchase) AS order_purchase_timestamp,
       to_timestamp_of(approved) AS order_approved_at, to_timestamp_of(carrier) AS order_delivered_carrier_date,
       to_timestamp_of(delivered) AS order_delivered_customer_date,
       to_timestamp_of(estimated) AS order_estimated_delivery_date
  FROM (SELECT *, row_number() OVER (PARTITION BY order_id ORDER BY batch DESC, rn DESC) AS pick
          FROM c_orders WHERE reason IS NULL) v
 WHERE pick = 1;

-- order_items
CREATE TABLE c_order_items AS
SELECT *, CASE WHEN order_id IS NULL THEN 'order_id_present'
               WHEN item IS NULL THEN 'order_item_id_present'
               WHEN price IS NULL THEN 'price_present'
               WHEN freight IS NULL THEN 'freight_value_present'
               WHEN NOT is_integer(item) THEN 'order_item_id_type'
               WHEN shipping IS NOT NULL AND NOT is_timestamp(shipping) THEN 'shipping_limit_date_type'
               WHEN NOT is_money(price) THEN 'price_type'
               WHEN NOT is_money(freight) THEN 'freight_value_type'
               WHEN money_cents(price) <= 0 THEN 'price_positive'
               WHEN money_cents(freight) < 0 THEN 'freight_not_negative'
               WHEN order_id NOT IN (SELECT order_id FROM s_orders) THEN 'order_exists'
          END AS reason
  FROM (
        SELECT batch, rn, id_or_null(order_id) AS order_id, blank_null(order_item_id) AS item, id_or_null(product_id) AS product_id,
               id_or_null(seller_id) AS seller_id, blank_null(shipping_limit_date) AS shipping,
               blank_null(price) AS price, blank_null(freight_value) AS freight
          FROM raw_order_items
         OFFSET 0
  ) t;
CREATE TABLE s_order_items AS
SELECT order_id, to_int(item) AS order_item_id, product_id, seller_id, to_timestamp_of(shipping) AS shipping_limit_date,
       CAST(money_cents(price) * 0.01 AS DECIMAL(10, 2)) AS price,
       CAST(money_cents(freight) * 0.01 AS DECIMAL(10, 2)) AS freight_value
  FROM (SELECT *, row_number() OVER (PARTITION BY order_id, to_int(item) ORDER BY batch DESC, rn DESC) AS pick
          FROM c_order_items WHERE reason IS NULL) v
 WHERE pick = 1;

-- order_payments
CREATE TABLE c_order_payments AS
SELECT *, CASE WHEN order_id IS NULL THEN 'order_id_present'
               WHEN seq IS NULL THEN 'payment_sequential_present'
               WHEN payment_type IS NULL THEN 'payment_type_present'
               WHEN installments IS NULL THEN 'payment_installments_present'
               WHEN payment_value IS NULL THEN 'payment_value_present'
               WHEN NOT is_integer(seq) THEN 'payment_sequential_type'
               WHEN NOT is_integer(installments) THEN 'payment_installments_type'
               WHEN NOT is_money(payment_value) THEN 'payment_value_type'
               WHEN money_cents(payment_value) <= 0 THEN 'payment_value_positive'
               WHEN payment_type NOT IN ('credit_card', 'boleto', 'voucher', 'debit_card', 'not_defined') THEN 'payment_type_known'
               WHEN to_int(installments) < 0 THEN 'installments_not_negative'
               WHEN order_id NOT IN (SELECT order_id FROM s_orders) THEN 'order_exists'
          END AS reason
  FROM (
        SELECT batch, rn, id_or_null(order_id) AS order_id, blank_null(payment_sequential) AS seq,
               lower(blank_null(payment_type)) AS payment_type, blank_null(payment_installments) AS installments,
               blank_null(payment_value) AS payment_value
          FROM raw_order_payments
         OFFSET 0
  ) t;
CREATE TABLE s_order_payments AS
SELECT order_id, to_int(seq) AS payment_sequential, payment_type, to_int(installments) AS payment_installments,
       CAST(money_cents(payment_value) * 0.01 AS DECIMAL(10, 2)) AS payment_value
  FROM (SELECT *, row_number() OVER (PARTITION BY order_id, to_int(seq) ORDER BY batch DESC, rn DESC) AS pick
          FROM c_order_payments WHERE reason IS NULL) v
 WHERE pick = 1;

-- order_reviews: the latest by answer, then creation, then review_id
CREATE TABLE c_order_reviews AS
SELECT *, CASE WHEN order_id IS NULL THEN 'order_id_present'
               WHEN score IS NULL THEN 'review_score_present'
               WHEN NOT is_integer(score) THEN 'review_score_type'
               WHEN created IS NOT NULL AND NOT is_timestamp(created) THEN 'review_creation_date_type'
               WHEN answered IS NOT NULL AND NOT is_timestamp(answered) THEN 'review_answer_timestamp_type'
               WHEN to_int(score) NOT BETWEEN 1 AND 5 THEN 'review_score_in_range'
          END AS reason
  FROM (
        SELECT batch, rn, id_or_null(order_id) AS order_id, id_or_null(review_id) AS review_id, blank_null(review_score) AS score,
               CASE WHEN blank_null(review_comment_title) IS NOT NULL THEN review_comment_title END AS review_comment_title,
               CASE WHEN blank_null(review_comment_message) IS NOT NULL THEN review_comment_message
                    ELSE 'No comment provided' END AS review_comment_message,
               blank_null(review_creation_date) AS created, blank_null(review_answer_timestamp) AS answered
          FROM raw_order_reviews
         OFFSET 0
  ) t;
CREATE TABLE s_order_reviews AS
SELECT order_id, review_id, review_score, review_comment_title, review_comment_message,
       review_creation_date, review_answer_timestamp
  FROM (SELECT order_id, review_id, to_int(score) AS review_score, review_comment_title, review_comment_message,
               to_timestamp_of(created) AS review_creation_date, to_timestamp_of(answered) AS review_answer_timestamp,
               row_number() OVER (PARTITION BY order_id
                                  ORDER BY to_timestamp_of(answered) DESC NULLS LAST, to_timestamp_of(created) DESC NULLS LAST,
                                           review_id DESC NULLS LAST, batch DESC, rn DESC) AS pick
          FROM c_order_reviews WHERE reason IS NULL) v
 WHERE pick = 1;

-- category_translation: names lose their byte-order marks
CREATE TABLE c_category_translation AS
SELECT *, CASE WHEN name IS NULL THEN 'product_category_name_present'
               WHEN english IS NULL THEN 'product_category_name_english_present' END AS reason
  FROM (
        SELECT batch, rn, blank_null(regexp_replace(product_category_name, '^(' || chr(65279) || ')+', '')) AS name,
               blank_null(regexp_replace(product_category_name_english, '^(' || chr(65279) || ')+', '')) AS english
          FROM raw_category_translation
         OFFSET 0
  ) t;
CREATE TABLE s_category_translation AS
SELECT name AS product_category_name, english AS product_category_name_english
  FROM (SELECT *, row_number() OVER (PARTITION BY name ORDER BY batch DESC, rn DESC) AS pick
          FROM c_category_translation WHERE reason IS NULL) v
 WHERE pick = 1;

-- products: the English category, else the Portuguese name
CREATE TABLE c_products AS
SELECT *, CASE WHEN product_id IS NULL THEN 'product_id_present'
               WHEN name_length IS NOT NULL AND NOT is_integer(name_length) THEN 'product_name_lenght_type'
               WHEN description_length IS NOT NULL AND NOT is_integer(description_length) THEN 'product_description_lenght_type'
               WHEN photos IS NOT NULL AND NOT is_integer(photos) THEN 'product_photos_qty_type'
               WHEN weight IS NOT NULL AND NOT is_integer(weight) THEN 'product_weight_g_type'
               WHEN length_cm IS NOT NULL AND NOT is_integer(length_cm) THEN 'product_length_cm_type'
               WHEN height_cm IS NOT NULL AND NOT is_integer(height_cm) THEN 'product_height_cm_type'
               WHEN width_cm IS NOT NULL AND NOT is_integer(width_cm) THEN 'product_width_cm_type'
          END AS reason
  FROM (
        SELECT batch, rn, id_or_null(product_id) AS product_id, blank_null(product_category_name) AS category,
               blank_null(product_name_lenght) AS name_length, blank_null(product_description_lenght) AS description_length,
               blank_null(product_photos_qty) AS photos, blank_null(product_weight_g) AS weight,
               blank_null(product_length_cm) AS length_cm, blank_null(product_height_cm) AS height_cm,
               blank_null(product_width_cm) AS width_cm
          FROM raw_products
         OFFSET 0
  ) t;
CREATE TABLE s_products AS
SELECT product_id, category AS product_category_name, coalesce(t.product_category_name_english, category) AS product_category,
       to_int(name_length) AS product_name_lenght, to_int(description_length) AS product_description_lenght,
       to_int(photos) AS product_photos_qty, to_int(weight) AS product_weight_g, to_int(length_cm) AS product_length_cm,
       to_int(height_cm) AS product_height_cm, to_int(width_cm) AS product_width_cm
  FROM (SELECT *, row_number() OVER (PARTITION BY product_id ORDER BY batch DESC, rn DESC) AS pick
          FROM c_products WHERE reason IS NULL) v
  LEFT JOIN s_category_translation t ON t.product_category_name = v.category
 WHERE pick = 1;

-- sellers
CREATE TABLE c_sellers AS
SELECT *, CASE WHEN seller_id IS NULL THEN 'seller_id_present'
               WHEN zip IS NOT NULL AND NOT is_zip(zip) THEN 'seller_zip_type'
          END AS reason
  FROM (
        SELECT batch, rn, id_or_null(seller_id) AS seller_id, blank_null(seller_zip_code_prefix) AS zip,
               place(seller_city) AS seller_city, place(seller_state) AS seller_state
          FROM raw_sellers
         OFFSET 0
  ) t;
CREATE TABLE s_sellers AS
SELECT seller_id, zip_value(zip) AS seller_zip,
       seller_city, seller_state
  FROM (SELECT *, row_number() OVER (PARTITION BY seller_id ORDER BY batch DESC, rn DESC) AS pick
          FROM c_sellers WHERE reason IS NULL) v
 WHERE pick = 1;

-- geolocation: exact duplicates removed
CREATE TABLE c_geolocation AS
SELECT *, CASE WHEN zip IS NULL THEN 'zip_present'
               WHEN lat IS NULL THEN 'lat_present'
               WHEN lng IS NULL THEN 'lng_present'
               WHEN NOT is_zip(zip) THEN 'zip_type'
               WHEN NOT is_double(lat) THEN 'lat_type'
               WHEN NOT is_double(lng) THEN 'lng_type'
               WHEN to_double(lat) NOT BETWEEN -33.75 AND 5.30 THEN 'lat_inside_brazil'
               WHEN to_double(lng) NOT BETWEEN -74.00 AND -34.70 THEN 'lng_inside_brazil'
          END AS reason
  FROM (
        SELECT batch, rn, blank_null(geolocation_zip_code_prefix) AS zip, blank_null(geolocation_lat) AS lat,
               blank_null(geolocation_lng) AS lng,
               CASE WHEN blank_null(geolocation_city) IS NOT NULL THEN geolocation_city END AS city,
               CASE WHEN blank_null(geolocation_state) IS NOT NULL THEN geolocation_state END AS state
          FROM raw_geolocation
         OFFSET 0
  ) t;
CREATE TABLE s_geolocation AS
SELECT DISTINCT zip_value(zip) AS zip, to_double(lat) AS lat, to_double(lng) AS lng,
       city, state
  FROM c_geolocation WHERE reason IS NULL;

-- What silver set aside: quarantined rows, and duplicates per table.
CREATE TABLE s_quarantine AS
          SELECT 'customers' AS table_name, batch, rn, reason FROM c_customers WHERE reason IS NOT NULL
UNION ALL SELECT 'orders', batch, rn, reason FROM c_orders WHERE reason IS NOT NULL
UNION ALL SELECT 'order_items', batch, rn, reason FROM c_order_items WHERE reason IS NOT NULL
UNION ALL SELECT 'order_payments', batch, rn, reason FROM c_order_payments WHERE reason IS NOT NULL
UNION ALL SELECT 'order_reviews', batch, rn, reason FROM c_order_reviews WHERE reason IS NOT NULL
UNION ALL SELECT 'category_translation', batch, rn, reason FROM c_category_translation WHERE reason IS NOT NULL
UNION ALL SELECT 'products', batch, rn, reason FROM c_products WHERE reason IS NOT NULL
UNION ALL SELECT 'sellers', batch, rn, reason FROM c_sellers WHERE reason IS NOT NULL
UNION ALL SELECT 'geolocation', batch, rn, reason FROM c_geolocation WHERE reason IS NOT NULL;
CREATE TABLE s_counts AS
          SELECT 'customers' AS table_name, (SELECT count(*) FROM s_customers) AS silver_rows,
                 (SELECT count(*) FROM c_customers WHERE reason IS NULL) AS valid_rows
UNION ALL SELECT 'orders', (SELECT count(*) FROM s_orders), (SELECT count(*) FROM c_orders WHERE reason IS NULL)
UNION ALL SELECT 'order_items', (SELECT count(*) FROM s_order_items), (SELECT count(*) FROM c_order_items WHERE reason IS NULL)
UNION ALL SELECT 'order_payments', (SELECT count(*) FROM s_order_payments),
                 (SELECT count(*) FROM c_order_payments WHERE reason IS NULL)
UNION ALL SELECT 'order_reviews', (SELECT count(*) FROM s_order_reviews), (SELECT count(*) FROM c_order_reviews WHERE reason IS NULL)
UNION ALL SELECT 'category_translation', (SELECT count(*) FROM s_category_translation),
                 (SELECT count(*) FROM c_category_translation WHERE reason IS NULL)
UNION ALL SELECT 'products', (SELECT count(*) FROM s_products), (SELECT count(*) FROM c_products WHERE reason IS NULL)
UNION ALL SELECT 'sellers', (SELECT count(*) FROM s_sellers), (SELECT count(*) FROM c_sellers WHERE reason IS NULL)
UNION ALL SELECT 'geolocation', (SELECT count(*) FROM s_geolocation), (SELECT count(*) FROM c_geolocation WHERE reason IS NULL);

-- phase: gold

-- One row per order of a person: its value (the sum of its payments) and
-- whether it counts.
CREATE TABLE g_orders AS
SELECT o.order_id, o.customer_id, c.customer_unique_id, o.order_purchase_timestamp AS purchase,
       o.order_status NOT IN ('canceled', 'unavailable') AS counted,
       coalesce(p.cents, 0) AS cents
  FROM s_orders o
  JOIN s_customers c ON c.customer_id = o.customer_id
  LEFT JOIN (SELECT order_id, CAST(sum(CAST(payment_value * 100 AS BIGINT)) AS BIGINT) AS cents
               FROM s_order_payments GROUP BY order_id) p ON p.order_id = o.order_id;

-- The canonical customer (earliest dated purchase, ties: smallest
-- customer_id; none: the smallest customer_id) and the address's (latest).
CREATE TABLE g_people AS
SELECT c.customer_unique_id,
       coalesce(e.customer_id, c.smallest) AS canonical,
       coalesce(l.customer_id, c.smallest) AS address_of
  FROM (SELECT customer_unique_id, min(customer_id) AS smallest FROM s_customers GROUP BY customer_unique_id) c
  LEFT JOIN (SELECT customer_unique_id, customer_id,
                    row_number() OVER (PARTITION BY customer_unique_id ORDER BY purchase, customer_id) AS pick
               FROM g_orders WHERE purchase IS NOT NULL) e ON e.customer_unique_id = c.customer_unique_id AND e.pick = 1
  LEFT JOIN (SELECT customer_unique_id, customer_id,
                    row_number() OVER (PARTITION BY customer_unique_id ORDER BY purchase DESC, customer_id) AS pick
               FROM g_orders WHERE purchase IS NOT NULL) l ON l.customer_unique_id = c.customer_unique_id AND l.pick = 1;

CREATE TABLE g_values AS
SELECT customer_unique_id,
       count(*) FILTER (WHERE counted) AS order_count,
       count(*) FILTER (WHERE NOT counted) AS canceled_order_count,
       CAST(coalesce(sum(cents) FILTER (WHERE counted), 0) AS BIGINT) AS spend_cents,
       coalesce(max(cents) FILTER (WHERE counted), 0) AS max_cents,
       CAST(min(purchase) FILTER (WHERE counted) AS DATE) AS first_order_date,
       CAST(max(purchase) FILTER (WHERE counted) AS DATE) AS last_order_date
  FROM g_orders GROUP BY customer_unique_id;

CREATE TABLE g_items AS
SELECT o.customer_unique_id, count(*) AS total_items, count(DISTINCT i.product_id) AS unique_products,
       count(DISTINCT p.product_category) AS categories
  FROM g_orders o
  JOIN s_order_items i ON i.order_id = o.order_id
  LEFT JOIN s_products p ON p.product_id = i.product_id
 WHERE o.counted
 GROUP BY o.customer_unique_id;

CREATE TABLE g_favorite AS
SELECT customer_unique_id, product_category AS favorite_category
  FROM (SELECT o.customer_unique_id, p.product_category,
               row_number() OVER (PARTITION BY o.customer_unique_id ORDER BY count(*) DESC, p.product_category) AS pick
          FROM g_orders o
          JOIN s_order_items i ON i.order_id = o.order_id
          JOIN s_products p ON p.product_id = i.product_id
         WHERE o.counted AND p.product_category IS NOT NULL
         GROUP BY o.customer_unique_id, p.product_category) v
 WHERE pick = 1;

CREATE TABLE g_reviews AS
SELECT o.customer_unique_id, count(*) AS total_reviews, CAST(sum(r.review_score) AS BIGINT) AS score_sum
  FROM g_orders o JOIN s_order_reviews r ON r.order_id = o.order_id
 GROUP BY o.customer_unique_id;

CREATE TABLE g_zips AS
SELECT zip, avg(lat) AS latitude, avg(lng) AS longitude FROM s_geolocation GROUP BY zip;

CREATE TABLE g_base AS
SELECT sha256_hex(p.customer_unique_id || p.canonical) AS golden_id, p.customer_unique_id, p.canonical AS customer_id,
       coalesce(v.order_count, 0) AS order_count, coalesce(v.canceled_order_count, 0) AS canceled_order_count,
       coalesce(v.spend_cents, 0) AS spend_cents, coalesce(v.max_cents, 0) AS max_cents,
       v.first_order_date, v.last_order_date,
       coalesce(i.total_items, 0) AS total_items, coalesce(i.unique_products, 0) AS unique_products,
       coalesce(i.categories, 0) AS categories, f.favorite_category,
       coalesce(r.total_reviews, 0) AS total_reviews, r.score_sum,
       a.customer_state AS geographic_state, a.customer_city AS geographic_city, a.customer_zip AS geographic_zip
  FROM g_people p
  LEFT JOIN g_values v ON v.customer_unique_id = p.customer_unique_id
  LEFT JOIN g_items i ON i.customer_unique_id = p.customer_unique_id
  LEFT JOIN g_favorite f ON f.customer_unique_id = p.customer_unique_id
  LEFT JOIN g_reviews r ON r.customer_unique_id = p.customer_unique_id
  JOIN s_customers a ON a.customer_id = p.address_of;

CREATE TABLE g_rfm AS
SELECT golden_id,
       ntile(5) OVER (ORDER BY last_order_date NULLS LAST, golden_id) AS recency_score,
       ntile(5) OVER (ORDER BY order_count, golden_id) AS frequency_score,
       ntile(5) OVER (ORDER BY spend_cents, golden_id) AS monetary_score
  FROM g_base WHERE order_count > 0;

CREATE TABLE g_customer_360 AS
SELECT b.golden_id, b.customer_unique_id, b.customer_id,
       ids.customer_ids,
       b.order_count, b.canceled_order_count,
       CAST(b.spend_cents * 0.01 AS DECIMAL(12, 2)) AS total_spend,
       CAST(CASE WHEN b.order_count = 0 THEN 0
                 ELSE idiv(2 * b.spend_cents + b.order_count, 2 * b.order_count) * 0.01 END AS DECIMAL(12, 2)) AS avg_order_value,
       CAST(b.max_cents * 0.01 AS DECIMAL(12, 2)) AS max_single_order,
       b.first_order_date, b.last_order_date, b.total_items, b.unique_products, b.favorite_category,
       CAST(CASE WHEN b.order_count = 0 THEN 0
                 ELSE idiv(20000 * b.categories + b.order_count, 2 * b.order_count) * 0.0001 END AS DECIMAL(10, 4)) AS product_diversity,
       CAST(CASE WHEN b.total_reviews > 0 THEN idiv(200 * b.score_sum + b.total_reviews, 2 * b.total_reviews) * 0.01 END
            AS DECIMAL(3, 2)) AS avg_review_score,
       b.total_reviews,
       CASE WHEN b.spend_cents > 500000 THEN 'VIP' WHEN b.spend_cents >= 100000 THEN 'High'
            WHEN b.spend_cents >= 20000 THEN 'Medium' ELSE 'Low' END AS ltv_segment,
       r.recency_score, r.frequency_score, r.monetary_score,
       CASE WHEN r.golden_id IS NULL THEN NULL
            WHEN r.recency_score = 5 THEN CASE idiv(r.frequency_score + r.monetary_score + 1, 2)
                 WHEN 1 THEN 'New Customers' WHEN 2 THEN 'Potential Loyalists' WHEN 3 THEN 'Potential Loyalists' ELSE 'Champions' END
            WHEN r.recency_score = 4 THEN CASE idiv(r.frequency_score + r.monetary_score + 1, 2)
                 WHEN 1 THEN 'Promising' WHEN 2 THEN 'Potential Loyalists' WHEN 3 THEN 'Potential Loyalists' ELSE 'Loyal Customers' END
            WHEN r.recency_score = 3 THEN CASE idiv(r.frequency_score + r.monetary_score + 1, 2)
                 WHEN 1 THEN 'About to Sleep' WHEN 2 THEN 'About to Sleep' WHEN 3 THEN 'Need Attention' ELSE 'Loyal Customers' END
            ELSE CASE idiv(r.frequency_score + r.monetary_score + 1, 2)
                 WHEN 1 THEN 'Hibernating' WHEN 2 THEN 'Hibernating' WHEN 3 THEN 'At Risk' WHEN 4 THEN 'At Risk'
                 ELSE 'Cannot Lose Them' END
       END AS rfm_segment,
       b.geographic_state, b.geographic_city, b.geographic_zip, z.latitude, z.longitude
  FROM g_base b
  JOIN (SELECT customer_unique_id, array_agg(customer_id ORDER BY customer_id) AS customer_ids
          FROM s_customers GROUP BY customer_unique_id) ids ON ids.customer_unique_id = b.customer_unique_id
  LEFT JOIN g_rfm r ON r.golden_id = b.golden_id
  LEFT JOIN g_zips z ON z.zip = b.geographic_zip;

CREATE TABLE g_bridge AS
SELECT c.customer_id, c.customer_unique_id, g.golden_id
  FROM s_customers c JOIN g_customer_360 g ON g.customer_unique_id = c.customer_unique_id;

-- phase: fingerprint

-- What both peers and the extension are compared by in the benchmark:
-- counts and exact sums, the same text in every engine.
SELECT count(*) AS people, sum(order_count) AS orders, sum(canceled_order_count) AS canceled,
       sum(total_spend) AS spend, sum(avg_order_value) AS avg_values, sum(max_single_order) AS max_orders,
       sum(total_items) AS items, sum(unique_products) AS products, sum(product_diversity) AS diversity,
       sum(avg_review_score) AS review_scores, sum(total_reviews) AS reviews,
       count(favorite_category) AS with_favorite, count(DISTINCT ltv_segment) AS ltv_segments,
       sum(recency_score) AS r, sum(frequency_score) AS f, sum(monetary_score) AS m,
       count(DISTINCT rfm_segment) AS rfm_segments, count(latitude) AS located,
       (SELECT count(*) FROM g_bridge) AS bridged
  FROM g_customer_360;
