fn main() {
    println!("berth-bench");
}
