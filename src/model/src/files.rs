//! The nine Olist source files: file names, bronze tables and header columns.
//!
//! This is the one place the input format is written down. The bronze DDL,
//! the header check of `ingest_bronze` and the sample generator (`gen/`)
//! all derive from it.

/// One Olist CSV file and the bronze table it lands in.
#[derive(Debug, Clone, Copy)]
pub struct SourceFile {
    /// The file name inside a source directory (the Olist original).
    pub file_name: &'static str,
    /// The table in schema `bronze` (and later `silver`).
    pub table: &'static str,
    /// The header columns, in file order (the Olist originals, typos included).
    pub columns: &'static [&'static str],
}

/// The nine files, in the order silver processes them (parents before children).
pub const SOURCE_FILES: [SourceFile; 9] = [
    SourceFile {
        file_name: "olist_customers_dataset.csv",
        table: "customers",
        columns: &[
            "customer_id",
            "customer_unique_id",
            "customer_zip_code_prefix",
            "customer_city",
            "customer_state",
        ],
    },
    SourceFile {
        file_name: "olist_orders_dataset.csv",
        table: "orders",
        columns: &[
            "order_id",
            "customer_id",
            "order_status",
            "order_purchase_timestamp",
            "order_approved_at",
            "order_delivered_carrier_date",
            "order_delivered_customer_date",
            "order_estimated_delivery_date",
        ],
    },
    SourceFile {
        file_name: "olist_order_items_dataset.csv",
        table: "order_items",
        columns: &[
            "order_id",
            "order_item_id",
            "product_id",
            "seller_id",
            "shipping_limit_date",
            "price",
            "freight_value",
        ],
    },
    SourceFile {
        file_name: "olist_order_payments_dataset.csv",
        table: "order_payments",
        columns: &[
            "order_id",
            "payment_sequential",
            "payment_type",
            "payment_installments",
            "payment_value",
        ],
    },
    SourceFile {
        file_name: "olist_order_reviews_dataset.csv",
        table: "order_reviews",
        columns: &[
            "review_id",
            "order_id",
            "review_score",
            "review_comment_title",
            "review_comment_message",
            "review_creation_date",
            "review_answer_timestamp",
        ],
    },
    SourceFile {
        file_name: "olist_products_dataset.csv",
        table: "products",
        columns: &[
            "product_id",
            "product_category_name",
            "product_name_lenght",
            "product_description_lenght",
            "product_photos_qty",
            "product_weight_g",
            "product_length_cm",
            "product_height_cm",
            "product_width_cm",
        ],
    },
    SourceFile {
        file_name: "olist_sellers_dataset.csv",
        table: "sellers",
        columns: &["seller_id", "seller_zip_code_prefix", "seller_city", "seller_state"],
    },
    SourceFile {
        file_name: "olist_geolocation_dataset.csv",
        table: "geolocation",
        columns: &[
            "geolocation_zip_code_prefix",
            "geolocation_lat",
            "geolocation_lng",
            "geolocation_city",
            "geolocation_state",
        ],
    },
    SourceFile {
        file_name: "product_category_name_translation.csv",
        table: "category_translation",
        columns: &["product_category_name", "product_category_name_english"],
    },
];
